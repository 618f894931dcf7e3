#include "trainer/fid/inception.h"

#include <filesystem>
#include <stdexcept>
#include <string>
#include <vector>

#include "trainer/fid/describe.h"

namespace ddpm {
namespace {

// c10::Error's message without the C++ backtrace that follows it: the first line is what the user needs.
std::string first_line(const c10::Error& error) {
  const std::string text = error.what_without_backtrace();
  return text.substr(0, text.find('\n'));
}

torch::jit::script::Module load_module(const std::string& path, const torch::Device& device) {
  namespace fs = std::filesystem;
  std::error_code error;
  if (!fs::exists(path, error)) throw std::runtime_error("--inception " + path + ": no such file");
  if (!fs::is_regular_file(path, error)) throw std::runtime_error("--inception " + path + ": not a regular file");
  torch::jit::script::Module module;
  try {
    module = torch::jit::load(path, device);
  } catch (const c10::Error& e) {
    throw std::runtime_error("--inception " + path +
                             ": not a TorchScript module (write one with launch/fid/export_inception.py, or "
                             "torch.jit.script(...).save): " + first_line(e));
  }
  if (!module.find_method("forward")) throw std::runtime_error("--inception " + path + ": the module has no forward method");
  module.eval();
  return module;
}

}  // namespace

InceptionNetwork::InceptionNetwork(const std::string& path, const torch::Device& device)
    : path_(path), device_(device), module_(load_module(path, device)) {}

torch::Tensor InceptionNetwork::activations(const torch::Tensor& images) {
  if (images.dim() != 4 || images.scalar_type() != torch::kUInt8 || (images.size(1) != 1 && images.size(1) != 3)) {
    throw std::invalid_argument("InceptionNetwork: expected uint8 images [N, 1 or 3, H, W], got " +
                                shape_text(images.sizes()));
  }
  const int64_t n = images.size(0);
  torch::InferenceMode inference;
  torch::Tensor x = images.to(device_, /*non_blocking=*/false).to(torch::kFloat32);
  if (x.size(1) == 1) x = x.expand({n, 3, x.size(2), x.size(3)}).contiguous();
  torch::jit::IValue output;
  try {
    output = module_.forward(std::vector<torch::jit::IValue>{x});
  } catch (const c10::Error& e) {
    throw std::runtime_error("--inception " + path_ + ": the module failed on a batch float32 " + shape_text(x.sizes()) +
                             ": " + first_line(e));
  }
  if (!output.isTensor()) {
    throw std::runtime_error("--inception " + path_ + ": the module returned a " + output.tagKind() +
                             ", expected a tensor of activations [N, D]");
  }
  torch::Tensor features = output.toTensor();
  if (features.dim() != 2 || features.size(0) != n || !torch::isFloatingType(features.scalar_type())) {
    throw std::runtime_error("--inception " + path_ + ": the module returned " +
                             std::string(c10::toString(features.scalar_type())) + " " + shape_text(features.sizes()) +
                             " for " + std::to_string(n) + " images, expected floating activations [" +
                             std::to_string(n) + ", D]");
  }
  return features;
}

}  // namespace ddpm
