// A data set as the loader sees it: every image decoded up front, so that bad files fail before training.
#pragma once
#include <torch/torch.h>

#include <cstdint>
#include <string>

namespace ddpm {

struct ImageDataset {
  torch::Tensor images;  // uint8 [N, C, H, W], contiguous
  torch::Tensor labels;  // int64 [N]; -1 where the format has none (folder)
  std::string source;    // where it came from, for messages

  int64_t size() const { return images.size(0); }
  int64_t channels() const { return images.size(1); }
  int64_t height() const { return images.size(2); }
  int64_t width() const { return images.size(3); }
};

}  // namespace ddpm
