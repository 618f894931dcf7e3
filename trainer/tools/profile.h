// A profile of a few steps, for `ddpm bench --profile-steps`: the figures that say what bounds a step, measured
// rather than guessed. How much of the step the device is busy (on a GPU the rest is launch and host overhead,
// which CUDA graphs remove), and which kernels (GPU) or operators (CPU) the busy time goes to, by self time.
// The events come from PyTorch's Kineto profiler (CUPTI on GPUs); launch/bench/peer_bench.py summarizes the peer's
// profile the same way, so the two tables compare line by line.
#pragma once
#include <torch/torch.h>

#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>
#include <vector>

namespace ddpm {

// One timed event on one track: a CUDA stream, or a host thread. Events on a track follow each other or nest
// (an operator inside the operator that called it), never overlap partly.
struct ProfiledEvent {
  std::string name;
  uint64_t track = 0;
  uint64_t start_ns = 0;
  uint64_t end_ns = 0;
};

// Per step: the busy time (the union of every event's interval, over all tracks), and each name's self time
// (its duration less that of the events nested in it) and calls, the `top` largest by self time listed.
nlohmann::json summarize_profile(std::vector<ProfiledEvent> events, int64_t steps, size_t top = 40);

// Collects from construction until stop(): the device's kernels, copies and fills on a GPU, the operators on a
// CPU. One at a time per process (the profiler is process-wide); a Profiler destroyed unstopped stops it.
class Profiler {
 public:
  explicit Profiler(const torch::Device& device);
  ~Profiler();
  Profiler(const Profiler&) = delete;
  Profiler& operator=(const Profiler&) = delete;

  // Stops collecting and returns the events; with a path, also writes the whole trace there (Chrome's trace
  // format: chrome://tracing or ui.perfetto.dev).
  std::vector<ProfiledEvent> stop(const std::string& trace_path = "");

 private:
  const bool cuda_;
  bool running_ = false;
};

}  // namespace ddpm
