#include "trainer/loop/step_flags.h"

#ifdef DDPM_WITH_CUDA
#include <ATen/cuda/CUDAContext.h>
#include <ATen/cuda/CUDAEvent.h>
#endif

namespace ddpm {

struct StepFlagsQueue::Pending {
  int64_t step;
  torch::Tensor host;  // pinned on CUDA: the copy is asynchronous
#ifdef DDPM_WITH_CUDA
  at::cuda::CUDAEvent copied;
#endif
};

StepFlagsQueue::StepFlagsQueue(const torch::Device& device) : lagged_(device.is_cuda()) {}

StepFlagsQueue::~StepFlagsQueue() = default;

void StepFlagsQueue::push(int64_t step, const torch::Tensor& flags) {
  auto pending = std::make_unique<Pending>();
  pending->step = step;
  if (!flags.is_cuda()) {
    pending->host = flags;
  } else {
#ifdef DDPM_WITH_CUDA
    pending->host = torch::empty(flags.sizes(), flags.options().device(torch::kCPU).pinned_memory(true));
    pending->host.copy_(flags, /*non_blocking=*/true);
    pending->copied.record(at::cuda::getCurrentCUDAStream(flags.device().index()));
#endif
  }
  pending_.push_back(std::move(pending));
}

std::vector<StepFlags> StepFlagsQueue::pop(bool drain, const std::function<void(const std::function<bool()>&)>& wait) {
  std::vector<StepFlags> out;
  const size_t keep = drain || !lagged_ ? 0 : 1;
  while (pending_.size() > keep) {
    Pending& oldest = *pending_.front();
#ifdef DDPM_WITH_CUDA
    if (lagged_ && !oldest.copied.query()) wait([&oldest] { return oldest.copied.query(); });
#else
    (void)wait;
#endif
    const float* values = oldest.host.data_ptr<float>();
    out.push_back({oldest.step, values[0] > 0.0f, values[1] > 0.0f});
    pending_.pop_front();
  }
  return out;
}

}  // namespace ddpm
