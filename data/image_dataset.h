// A data set as the loader sees it: every image decoded up front, so that bad files fail before training.
#pragma once
#include <torch/torch.h>

#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "data/raw_images.h"

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

namespace detail {
// A CPU tensor over the vector's elements that owns the vector (moved, not copied).
template <class T>
torch::Tensor adopt_vector(std::vector<T>&& values, c10::IntArrayRef sizes, torch::Dtype dtype) {
  auto owner = std::make_unique<std::vector<T>>(std::move(values));
  T* data = owner->data();
  torch::Tensor tensor = torch::from_blob(
      data, sizes, [vector = owner.get()](void*) { delete vector; }, torch::TensorOptions().dtype(dtype));
  owner.release();  // the tensor's deleter owns it now
  return tensor;
}
}  // namespace detail

// Wraps a reader's arrays as tensors without copying the pixels.
inline ImageDataset to_image_dataset(RawImages raw) {
  if (raw.pixels.size() != static_cast<size_t>(raw.count * raw.channels * raw.height * raw.width) ||
      raw.labels.size() != static_cast<size_t>(raw.count)) {
    throw std::logic_error("to_image_dataset: " + raw.source + ": the arrays do not match the shape");
  }
  ImageDataset dataset;
  dataset.images =
      detail::adopt_vector(std::move(raw.pixels), {raw.count, raw.channels, raw.height, raw.width}, torch::kUInt8);
  dataset.labels = detail::adopt_vector(std::move(raw.labels), {raw.count}, torch::kInt64);
  dataset.source = std::move(raw.source);
  return dataset;
}

}  // namespace ddpm
