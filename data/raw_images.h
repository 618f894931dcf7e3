// Images as the readers produce them: plain uint8 arrays, before the data set layer wraps them in tensors
// (to_image_dataset in image_dataset.h, without a copy). Torch-free, so that the readers (idx, cifar10,
// image_folder, resize, file_bytes) build without LibTorch: tests/fuzz compiles them alone.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace ddpm {

struct RawImages {
  int64_t count = 0;
  int64_t channels = 0;
  int64_t height = 0;
  int64_t width = 0;
  std::vector<uint8_t> pixels;  // [count, channels, height, width], row-major (NCHW)
  std::vector<int64_t> labels;  // [count]; -1 where the format has none (folder)
  std::string source;           // where it came from, for messages
};

}  // namespace ddpm
