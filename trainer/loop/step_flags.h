// The agreement of all ranks on each step: was a loss or gradient non-finite on any rank, and was any rank
// asked to stop (SIGTERM / SIGINT)? The flags are all-reduced on the device every step, and the skip itself is
// applied on the device (Adam's found_inf, a zero EMA weight), so only bookkeeping needs them on the host:
// the skip counter, the consecutive-skip limit, the stop. On a GPU the host reads a step's flags one step late,
// after it has queued the next step, so it never waits for the step it has just queued; on a CPU they are read
// at once. Every rank reads the same steps at the same points, so all act on a stop at the same step.
#pragma once
#include <torch/torch.h>

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <vector>

namespace ddpm {

struct StepFlags {
  int64_t step = 0;      // the step the flags belong to
  bool nonfinite = false;
  bool stop = false;
};

class StepFlagsQueue {
 public:
  explicit StepFlagsQueue(const torch::Device& device);
  ~StepFlagsQueue();
  StepFlagsQueue(const StepFlagsQueue&) = delete;
  StepFlagsQueue& operator=(const StepFlagsQueue&) = delete;

  // flags: float32 [2] on the device, summed over ranks: [non-finite count, stop count].
  void push(int64_t step, const torch::Tensor& flags);
  // The flags whose turn has come (all of them when `drain`), oldest first. `wait(ready)` is called when
  // the oldest is not ready yet; it must return once ready() is true (polling, under a watchdog).
  std::vector<StepFlags> pop(bool drain, const std::function<void(const std::function<bool()>& ready)>& wait);

 private:
  struct Pending;
  const bool lagged_;  // one step late on CUDA devices
  std::deque<std::unique_ptr<Pending>> pending_;
};

}  // namespace ddpm
