#pragma once

#include <torch/torch.h>

namespace ddpm {

// y = SiLU(GroupNorm(x + bias)) in one pass (either part optional: bias undefined, silu false), for float32
// NHWC (channels-last) x on a CPU; bias [N, C] adds a constant per image and channel (the time embedding) before
// the statistics. Equal to the composed operators up to float round-off; returns NHWC. (UNetInference's norm.)
torch::Tensor group_norm_nhwc(const torch::Tensor& x, const torch::Tensor& bias, const torch::Tensor& weight,
                              const torch::Tensor& shift, int64_t groups, double eps, bool silu);

}  // namespace ddpm
