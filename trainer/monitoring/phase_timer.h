// Where a training step's time goes, for `ddpm bench`: forward, backward, the exposed part of the gradient
// all-reduce, and the optimizer (clipping, agreement, Adam, EMA). On a GPU each boundary is a CUDA event on the
// compute stream, so the split is device time and the host never waits while the steps run; on a CPU, where
// every op completes before the next starts, host clocks measure the same thing.
#pragma once
#include <torch/torch.h>

#include <array>
#include <chrono>
#include <memory>
#include <vector>

namespace ddpm {

// kCapturedStep: a whole step replayed from a CUDA graph (train.cuda_graph), which has no boundaries inside.
enum class Phase { kForward = 0, kBackward, kCommunication, kOptimizer, kCapturedStep };
inline constexpr size_t kPhases = 5;

class PhaseTimer {
 public:
  explicit PhaseTimer(const torch::Device& device);
  ~PhaseTimer();
  PhaseTimer(const PhaseTimer&) = delete;
  PhaseTimer& operator=(const PhaseTimer&) = delete;

  // Starts a step: the time until the next mark is charged to that mark's phase.
  void start_step();
  // The work queued since the previous mark belongs to `phase`.
  void mark(Phase phase);
  // Waits for the device, then: milliseconds per phase summed over the steps since the last reset.
  std::array<double, kPhases> totals_ms();
  void reset();

 private:
  struct Mark;
  const bool cuda_;
  std::vector<std::unique_ptr<Mark>> marks_;
};

}  // namespace ddpm
