// `ddpm bench`: the speed of the real training step and of sampling for a config, in figures that compare with
// any other implementation: images/s, ms per step split into phases (device events), peak device memory, and
// model FLOPs utilization (FLOPs counted from the model's layers, against the device's measured matmul rate),
// and on request a profile of a few steps that says where the time goes.
#pragma once
#include <string>

#include "distributed/mpi_context.h"
#include "trainer/config/config.h"

namespace ddpm {

struct BenchOptions {
  int64_t warmup = 10;      // steps run before timing (allocator, kernels' autotuning, the loader's prefetch)
  int64_t steps = 50;       // steps timed
  int64_t sample_batch = 0;  // 0: no sampling benchmark; else ancestral sampling over sample_steps, then the fast
                             // samplers over the config's T ("sampling_fast": 250 respaced steps, DDIM over 50)
  int64_t sample_steps = 0;  // 0: all diffusion.timesteps
  int64_t profile_steps = 0;  // > 0: after the timed steps, this many more under the profiler (trainer/profile.h),
                              // and as many sampling steps (at least 25) where sampling is timed, without CUDA graphs
  std::string trace;          // with profile_steps: the training steps' whole trace, in Chrome's trace format
};

// Runs the benchmark on every rank of the job (a temporary run directory; nothing is written elsewhere) and
// returns rank 0's report as one JSON object (other ranks: empty).
std::string run_bench(const Config& config, const MpiContext& mpi, const torch::Device& device, const BenchOptions& options);

}  // namespace ddpm
