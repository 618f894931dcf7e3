// Sample images to look at: a grid of uint8 images, written as PNG (libpng).
#pragma once
#include <torch/torch.h>

#include <string>

namespace ddpm {

// uint8 [N, C, H, W] → uint8 [C, rows·(H+pad)+pad, cols·(W+pad)+pad] with ceil(√N) columns and a black border.
torch::Tensor make_grid(const torch::Tensor& images, int64_t padding = 2);

// Writes uint8 [C, H, W] (C = 1 gray, 3 RGB) as an 8-bit PNG, under a temporary name renamed at the end (never half a
// file at `path`). Throws std::runtime_error naming the path.
void write_png(const std::string& path, const torch::Tensor& image);

}  // namespace ddpm
