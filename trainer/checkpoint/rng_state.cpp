#include "trainer/checkpoint/rng_state.h"

#include <cstring>

#ifdef DDPM_WITH_CUDA
#include <ATen/cuda/CUDAGeneratorImpl.h>
#endif

namespace ddpm {
namespace {

torch::Tensor bytes_tensor(const std::string& bytes) {
  torch::Tensor t = torch::empty({static_cast<int64_t>(bytes.size())}, torch::kUInt8);
  std::memcpy(t.data_ptr(), bytes.data(), bytes.size());
  return t;
}

std::string tensor_bytes(const torch::Tensor& t) {
  const torch::Tensor c = t.contiguous().to(torch::kCPU);
  return std::string(static_cast<const char*>(c.data_ptr()), static_cast<size_t>(c.numel()));
}

std::string rng_key(int rank, size_t generator) {
  return "rng/" + std::to_string(rank) + "/" + std::to_string(generator);
}

}  // namespace

std::vector<at::Generator> rank_generators(const torch::Device& device) {
  std::vector<at::Generator> generators = {at::detail::getDefaultCPUGenerator()};
#ifdef DDPM_WITH_CUDA
  if (device.is_cuda()) generators.push_back(at::cuda::detail::getDefaultCUDAGenerator(device.index()));
#endif
  return generators;
}

void seed_rank_generators(uint64_t seed, int rank) {
  // Distinct, reproducible streams per rank; torch::manual_seed seeds CPU and every CUDA device.
  torch::manual_seed(seed * 1000003ULL + static_cast<uint64_t>(rank));
}

std::string pack_generator_states(const torch::Device& device) {
  std::string packed;
  for (const at::Generator& g : rank_generators(device)) {
    const std::string bytes = tensor_bytes(g.get_state());
    packed += std::to_string(bytes.size()) + ":" + bytes;
  }
  return packed;
}

void unpack_generator_states(const std::string& packed, int rank, StateDict& into) {
  size_t at = 0;
  for (size_t g = 0; at < packed.size(); ++g) {
    const size_t colon = packed.find(':', at);
    const size_t length = std::stoull(packed.substr(at, colon - at));
    into[rng_key(rank, g)] = bytes_tensor(packed.substr(colon + 1, length));
    at = colon + 1 + length;
  }
}

void restore_generator_states(const StateDict& tensors, int rank, const torch::Device& device) {
  std::vector<at::Generator> generators = rank_generators(device);
  for (size_t g = 0; g < generators.size(); ++g) {
    const auto found = tensors.find(rng_key(rank, g));
    if (found != tensors.end()) generators[g].set_state(found->second.contiguous());
  }
}

GeneratorStateGuard::GeneratorStateGuard(const torch::Device& device) : generators_(rank_generators(device)) {
  for (at::Generator& g : generators_) states_.push_back(g.get_state());
}

GeneratorStateGuard::~GeneratorStateGuard() {
  for (size_t i = 0; i < generators_.size(); ++i) generators_[i].set_state(states_[i]);
}

}  // namespace ddpm
