#include "trainer/loop/step_hooks.h"

#include <limits>

namespace ddpm {

torch::Tensor StepHooks::input(torch::Tensor images) const {
  if (!faults_.active(FaultKind::kNanInput, step_)) return images;
  images = images.clone();
  images.view({-1})[0].fill_(std::numeric_limits<float>::quiet_NaN());
  return images;
}

torch::Tensor StepHooks::loss(torch::Tensor loss) const {
  if (!faults_.active(FaultKind::kNanLoss, step_)) return loss;
  return loss + std::numeric_limits<double>::quiet_NaN();
}

void StepHooks::gradients(const std::vector<torch::Tensor>& parameters) const {
  if (!faults_.active(FaultKind::kNanGrad, step_)) return;
  torch::NoGradGuard no_grad;
  parameters.front().grad().view({-1})[0].fill_(std::numeric_limits<float>::quiet_NaN());
}

void StepHooks::mark(Phase phase) const {
  if (clock_ == nullptr) return;  // a step that is not timed (captured, or static inputs)
  if (phase == Phase::kBackward) clock_->backward_done = std::chrono::steady_clock::now();
  if (phase == Phase::kCommunication) clock_->synced = std::chrono::steady_clock::now();
  if (timer_ != nullptr) timer_->mark(phase);
}

}  // namespace ddpm
