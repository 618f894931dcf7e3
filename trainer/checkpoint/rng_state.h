// The random state of one rank: its generators (the CPU's, and its CUDA device's), how they are seeded, and how
// their states travel to rank 0 and into a checkpoint ("rng/<rank>/<generator>"), so that a resumed run draws
// exactly what an uninterrupted one would (dropout draws from them).
#pragma once
#include <torch/torch.h>

#include <string>
#include <vector>

#include "trainer/model/state_dict.h"

namespace ddpm {

// This rank's generators: the CPU's always, the device's when on CUDA.
std::vector<at::Generator> rank_generators(const torch::Device& device);
// Seeds this rank's default generators: seed and rank together, so ranks draw different dropout masks.
void seed_rank_generators(uint64_t seed, int rank);

// This rank's generator states as one byte string, each length-prefixed ("<n>:<bytes>..."), to gather at rank 0.
std::string pack_generator_states(const torch::Device& device);
// Rank `rank`'s packed states as tensors "rng/<rank>/<generator>" of `into`.
void unpack_generator_states(const std::string& packed, int rank, StateDict& into);
// Sets this rank's generators from the "rng/<rank>/<generator>" tensors that `tensors` holds.
void restore_generator_states(const StateDict& tensors, int rank, const torch::Device& device);

// Puts this rank's generators back as they were when the scope began: for work that must not move the training
// draws (building a model whose initial weights are overwritten anyway).
class GeneratorStateGuard {
 public:
  explicit GeneratorStateGuard(const torch::Device& device);
  ~GeneratorStateGuard();
  GeneratorStateGuard(const GeneratorStateGuard&) = delete;
  GeneratorStateGuard& operator=(const GeneratorStateGuard&) = delete;

 private:
  std::vector<at::Generator> generators_;
  std::vector<torch::Tensor> states_;
};

}  // namespace ddpm
