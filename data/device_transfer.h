// Moves collated batches to the training device without stalling the compute stream.
#pragma once
#include <torch/torch.h>

#include <optional>

#include "data/batch.h"

namespace ddpm {

// On CPU a no-op. On CUDA (built with DDPM_WITH_CUDA) the loader collates into pinned memory and this copies with
// non_blocking on a side stream, recording an event that the caller's current stream waits on, so the copy of
// batch k+1 overlaps the compute of batch k without any host synchronization.
class DeviceTransfer {
 public:
  // Throws DataError for a CUDA device in a build without CUDA.
  explicit DeviceTransfer(torch::Device device);

  bool wants_pinned_memory() const { return device_.is_cuda(); }
  Batch to_device(Batch batch) const;

 private:
  torch::Device device_;
  std::optional<c10::Stream> side_stream_;
};

}  // namespace ddpm
