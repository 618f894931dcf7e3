#include "data/device_transfer.h"

#ifdef DDPM_WITH_CUDA
#include <ATen/cuda/CUDAEvent.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#endif

#include "data/data_error.h"

namespace ddpm {

DeviceTransfer::DeviceTransfer(torch::Device device) : device_(device) {
  if (!device.is_cuda()) {
    if (!device.is_cpu()) {
      throw DataError("the data loader supports CPU and CUDA devices, got " + device.str());
    }
    return;
  }
#ifdef DDPM_WITH_CUDA
  if (!torch::cuda::is_available()) {
    throw DataError("the data loader was asked for " + device.str() + " but no CUDA device is available");
  }
  if (!device_.has_index()) {
    device_ = torch::Device(torch::kCUDA, c10::cuda::current_device());
  }
  side_stream_ = c10::cuda::getStreamFromPool(/*isHighPriority=*/false, device_.index()).unwrap();
#else
  throw DataError("the data loader was asked for " + device.str() + " but ddpm was built without CUDA");
#endif
}

Batch DeviceTransfer::to_device(Batch batch) const {
  if (!device_.is_cuda()) return batch;
#ifdef DDPM_WITH_CUDA
  c10::cuda::CUDAGuard device_guard(device_);
  const c10::cuda::CUDAStream consumer = c10::cuda::getCurrentCUDAStream(device_.index());
  const c10::cuda::CUDAStream side(c10::cuda::CUDAStream::UNCHECKED, *side_stream_);
  at::cuda::CUDAEvent copied;
  {
    c10::cuda::CUDAStreamGuard stream_guard(side);
    // Pinned sources: the copies are truly asynchronous, and the caching host allocator keeps the host
    // memory alive until they complete.
    batch.images = batch.images.to(device_, /*non_blocking=*/true);
    batch.labels = batch.labels.to(device_, /*non_blocking=*/true);
    batch.indices = batch.indices.to(device_, /*non_blocking=*/true);  // the keyed draws read them there
    copied.record(side);
  }
  copied.block(consumer);
  // Allocated on the side stream but used on the consumer's: tell the caching allocator, or it could hand the
  // memory out again while the consumer still reads it.
  batch.images.record_stream(consumer);
  batch.labels.record_stream(consumer);
  batch.indices.record_stream(consumer);
#endif
  return batch;
}

}  // namespace ddpm
