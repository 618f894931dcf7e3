// The random draws of training, t ~ U{1..T} and ε ~ N(0, I) per image (Algorithm 1), as a function of
// (seed, step, data set index) alone, computed on the device. Counter-based: SplitMix64 of the image's key and
// each element's position, then Box–Muller. So an image gets the same t and ε whatever batch, rank or number of
// ranks it lands on (N ranks with batch B train exactly like one rank with batch N·B), a resumed run draws what
// the uninterrupted one drew, and no generator state lives on the host or has to be copied to the device.
#pragma once
#include <torch/torch.h>

#include <cstdint>

namespace ddpm {

// SplitMix64's finalizer (data/splitmix64.h) elementwise on an int64 tensor, with 64-bit wrapping arithmetic.
torch::Tensor splitmix64_mix(const torch::Tensor& z);

// How a draw is computed. kAuto: on the CPU a loop over plain 64-bit integers (one pass), elsewhere tensor
// operations (what a captured CUDA graph replays); the two give the same bits. kTensorOps: tensor operations
// wherever the tensors are (so that the tests compare the GPUs' form with the host's on a CPU).
enum class KeyedCompute { kAuto, kTensorOps };

struct KeyedDraws {
  torch::Tensor u;      // float64 [B] in [0, 1): the image's uniform for t (an importance sampler inverts its CDF at u)
  torch::Tensor t;      // int64 [B], timestep index in [0, num_timesteps): floor(u·T), uniform
  torch::Tensor noise;  // [B, item_shape...] in `dtype`
};

// ε for each index: [B, item_shape...] standard normal in `dtype`, a function of (key, index, element) alone.
// `indices`: int64 on the target device.
torch::Tensor keyed_normal(uint64_t key, const torch::Tensor& indices, c10::IntArrayRef item_shape, torch::ScalarType dtype);
// The same with the key a 0-d int64 tensor on the device (a captured CUDA graph computes it there).
torch::Tensor keyed_normal(const torch::Tensor& key, const torch::Tensor& indices, c10::IntArrayRef item_shape,
                           torch::ScalarType dtype, KeyedCompute compute = KeyedCompute::kAuto);

// hash_combine(a, b) of data/splitmix64.h, bit for bit, elementwise over the integer tensor b on the device:
// an int64 tensor of b's shape there.
torch::Tensor hash_combine_on_device(uint64_t a, const torch::Tensor& b, KeyedCompute compute = KeyedCompute::kAuto);

// Training's draws for step `step`: `indices` are the data set indices of the batch (int64, on the target device).
KeyedDraws keyed_timesteps_and_noise(uint64_t seed, int64_t step, const torch::Tensor& indices, c10::IntArrayRef item_shape,
                                     int64_t num_timesteps, torch::ScalarType dtype);
// The same draws with the step read from a 0-d integer tensor on the device, so that a captured CUDA graph of
// the training step draws anew on every replay (the host step would be frozen into the graph).
KeyedDraws keyed_timesteps_and_noise(uint64_t seed, const torch::Tensor& step, const torch::Tensor& indices,
                                     c10::IntArrayRef item_shape, int64_t num_timesteps, torch::ScalarType dtype);

}  // namespace ddpm
