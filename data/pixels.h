// The one place where 8-bit pixels become model inputs and back: x = u / 127.5 - 1, so 0 → -1 and 255 → +1.
#pragma once
#include <torch/torch.h>

namespace ddpm {

// uint8 [.., H, W] (any leading dims) → float32 in [-1, 1].
torch::Tensor pixels_to_model_range(const torch::Tensor& pixels);
// float in [-1, 1] → uint8, rounding to the nearest of the 256 levels and clamping outside the range.
torch::Tensor model_range_to_pixels(const torch::Tensor& x);

}  // namespace ddpm
