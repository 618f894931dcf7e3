// What a training step lets the outside see and do without being part of its numerics: the NaNs that the
// fault-injection tests plant (DDPM_FAULT), the phase marks of `ddpm bench`, and the host clocks of the step-time
// metrics. The step calls these at fixed points; each is a no-op unless a test or the benchmark asked for it.
#pragma once
#include <torch/torch.h>

#include <chrono>
#include <cstdint>
#include <vector>

#include "trainer/loop/fault_injection.h"
#include "trainer/monitoring/phase_timer.h"

namespace ddpm {

// Host times inside an eager step, for the phase metrics.
struct StepClock {
  std::chrono::steady_clock::time_point backward_done, synced;
};

class StepHooks {
 public:
  // `step`: the step being trained (from 1). `timer` and `clock` may be null (not timed).
  StepHooks(const FaultInjector& faults, int64_t step, PhaseTimer* timer, StepClock* clock)
      : faults_(faults), step_(step), timer_(timer), clock_(clock) {}

  // nan_input: one pixel of the batch is NaN.
  torch::Tensor input(torch::Tensor images) const;
  // nan_loss: the loss is NaN (its gradients stay finite).
  torch::Tensor loss(torch::Tensor loss) const;
  // nan_grad: one gradient element of this rank is NaN, after the all-reduce.
  void gradients(const std::vector<torch::Tensor>& parameters) const;
  // The work queued since the previous mark belongs to `phase`; the end of backward and of communication are
  // also noted on the clock.
  void mark(Phase phase) const;

 private:
  const FaultInjector& faults_;
  const int64_t step_;
  PhaseTimer* const timer_;
  StepClock* const clock_;
};

}  // namespace ddpm
