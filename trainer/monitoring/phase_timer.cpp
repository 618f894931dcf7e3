#include "trainer/monitoring/phase_timer.h"

#ifdef DDPM_WITH_CUDA
#include <ATen/cuda/CUDAContext.h>
#include <ATen/cuda/CUDAEvent.h>
#endif

namespace ddpm {

struct PhaseTimer::Mark {
  int phase;  // -1: the start of a step
  std::chrono::steady_clock::time_point host;
#ifdef DDPM_WITH_CUDA
  at::cuda::CUDAEvent event{cudaEventDefault};  // with timing
#endif
};

PhaseTimer::PhaseTimer(const torch::Device& device) : cuda_(device.is_cuda()) {}

PhaseTimer::~PhaseTimer() = default;

void PhaseTimer::start_step() {
  auto mark = std::make_unique<Mark>();
  mark->phase = -1;
  mark->host = std::chrono::steady_clock::now();
#ifdef DDPM_WITH_CUDA
  if (cuda_) mark->event.record(at::cuda::getCurrentCUDAStream());
#endif
  marks_.push_back(std::move(mark));
}

void PhaseTimer::mark(Phase phase) {
  auto mark = std::make_unique<Mark>();
  mark->phase = static_cast<int>(phase);
  mark->host = std::chrono::steady_clock::now();
#ifdef DDPM_WITH_CUDA
  if (cuda_) mark->event.record(at::cuda::getCurrentCUDAStream());
#endif
  marks_.push_back(std::move(mark));
}

std::array<double, kPhases> PhaseTimer::totals_ms() {
  std::array<double, kPhases> totals{};
#ifdef DDPM_WITH_CUDA
  if (cuda_ && !marks_.empty()) marks_.back()->event.synchronize();
#endif
  for (size_t i = 1; i < marks_.size(); ++i) {
    const Mark& previous = *marks_[i - 1];
    const Mark& current = *marks_[i];
    if (current.phase < 0) continue;  // a new step: the gap before it (data, logging) is no phase's
    double ms = std::chrono::duration<double, std::milli>(current.host - previous.host).count();
#ifdef DDPM_WITH_CUDA
    if (cuda_) ms = previous.event.elapsed_time(current.event);
#endif
    totals[static_cast<size_t>(current.phase)] += ms;
  }
  return totals;
}

void PhaseTimer::reset() { marks_.clear(); }

}  // namespace ddpm
