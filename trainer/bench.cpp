#include "trainer/bench.h"

#include <sys/resource.h>

#include <nlohmann/json.hpp>

#include <chrono>
#include <filesystem>
#include <fstream>

#include "trainer/autocast.h"
#include "trainer/builders.h"
#include "trainer/inference.h"
#include "trainer/phase_timer.h"
#include "trainer/trainer.h"
#ifdef DDPM_WITH_CUDA
#include <ATen/cuda/CUDAContext.h>
#include <ATen/cuda/CUDAEvent.h>
#include <c10/cuda/CUDACachingAllocator.h>
#endif

namespace ddpm {
namespace fs = std::filesystem;
namespace {

using Clock = std::chrono::steady_clock;

std::string device_name(const torch::Device& device) {
#ifdef DDPM_WITH_CUDA
  if (device.is_cuda()) return at::cuda::getDeviceProperties(device.index())->name;
#endif
  std::ifstream cpuinfo("/proc/cpuinfo");
  for (std::string line; std::getline(cpuinfo, line);) {
    if (line.rfind("model name", 0) == 0) return line.substr(line.find(':') + 2) + " (CPU)";
  }
  return "CPU";
}

void device_synchronize(const torch::Device& device) {
#ifdef DDPM_WITH_CUDA
  if (device.is_cuda()) torch::cuda::synchronize(device.index());
#endif
}

void reset_peak_memory(const torch::Device& device) {
#ifdef DDPM_WITH_CUDA
  if (device.is_cuda()) c10::cuda::CUDACachingAllocator::resetPeakStats(device.index());
#endif
}

// Peak bytes allocated on the device since the last reset (CUDA), or the process's peak resident set (CPU).
int64_t peak_memory(const torch::Device& device) {
#ifdef DDPM_WITH_CUDA
  if (device.is_cuda()) {
    const auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(device.index());
    return stats.allocated_bytes[static_cast<size_t>(c10::CachingAllocator::StatType::AGGREGATE)].peak;
  }
#endif
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return static_cast<int64_t>(usage.ru_maxrss) * 1024;
}

// The device's matrix-multiply rate in the training precision: the denominator of MFU, measured rather than
// taken from a data sheet (clocks and power limits differ between boards).
double matmul_flops_per_second(const torch::Device& device, torch::ScalarType dtype) {
  const int64_t n = device.is_cuda() ? 8192 : 1024;
  const int repeats = device.is_cuda() ? 50 : 10;
  const auto options = torch::TensorOptions().dtype(dtype).device(device);
  const torch::Tensor a = torch::randn({n, n}, options), b = torch::randn({n, n}, options);
  torch::Tensor c = torch::mm(a, b);
  double best = 0.0;
  for (int trial = 0; trial < 3; ++trial) {  // the best of three: a busy host only ever slows a trial down
    device_synchronize(device);
    const Clock::time_point start = Clock::now();
    for (int i = 0; i < repeats; ++i) c = torch::mm(a, b);
    device_synchronize(device);
    const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
    best = std::max(best, 2.0 * static_cast<double>(n) * n * n * repeats / seconds);
  }
  return best;
}

nlohmann::json training_figures(Trainer& trainer, const Config& config, const MpiContext& mpi,
                                const torch::Device& device, const BenchOptions& options) {
  trainer.run_steps(options.warmup);
  trainer.synchronize();
  reset_peak_memory(device);
  PhaseTimer timer(device);
  const Clock::time_point start = Clock::now();
  trainer.run_steps(options.steps, &timer);
  trainer.synchronize();
  const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
  const std::array<double, kPhases> phases = timer.totals_ms();
  const double steps = static_cast<double>(options.steps);
  const double per_rank_images = static_cast<double>(config.train.batch_size) * steps / seconds;
  const double forward_flops = static_cast<double>(trainer.model()->forward_flops());
  // Forward once, backward twice the forward (gradients of inputs and of weights).
  const double achieved = 3.0 * forward_flops * per_rank_images;
  const torch::ScalarType matmul_dtype = config.train.precision == "bf16" ? torch::kBFloat16 : torch::kFloat32;
  const double peak = matmul_flops_per_second(device, matmul_dtype);
  nlohmann::json out;
  out["images_per_second"] = per_rank_images * mpi.world_size();
  out["images_per_second_per_rank"] = per_rank_images;
  out["ms_per_step"] = 1000.0 * seconds / steps;
  out["phase_ms"] = {{"forward", phases[0] / steps},
                     {"backward", phases[1] / steps},
                     {"communication", phases[2] / steps},
                     {"optimizer", phases[3] / steps},
                     {"captured_step", phases[4] / steps},
                     {"other", 1000.0 * seconds / steps - (phases[0] + phases[1] + phases[2] + phases[3] + phases[4]) / steps}};
  out["peak_memory_bytes"] = peak_memory(device);
  out["forward_flops_per_image"] = forward_flops;
  out["train_flops_per_image"] = 3.0 * forward_flops;
  out["achieved_tflops"] = achieved / 1e12;
  out["matmul_peak_tflops"] = peak / 1e12;
  out["matmul_dtype"] = matmul_dtype == torch::kBFloat16 ? "bf16" : "fp32";
  out["mfu"] = achieved / peak;
  return out;
}

nlohmann::json sampling_figures(const Config& config, const torch::Device& device, const BenchOptions& options) {
  Config sampling = config;
  if (options.sample_steps > 0) sampling.diffusion.timesteps = options.sample_steps;
  LoadedModel loaded = load_model(sampling, "", /*allow_fresh=*/true, device);
  const GaussianDiffusion diffusion = make_diffusion(sampling).to(device);
  const SamplerOptions sampler = sampler_options(sampling);
  // A short warm-up run (kernel selection), then the timed one.
  Config warm = sampling;
  warm.diffusion.timesteps = std::min<int64_t>(sampling.diffusion.timesteps, 25);
  sample_images(loaded.model, make_diffusion(warm).to(device), options.sample_batch, 1, options.sample_batch, device, sampler);
  device_synchronize(device);
  reset_peak_memory(device);
  const Clock::time_point start = Clock::now();
  sample_images(loaded.model, diffusion, options.sample_batch, 1, options.sample_batch, device, sampler);
  device_synchronize(device);
  const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
  return {{"sampling_images_per_second", static_cast<double>(options.sample_batch) / seconds},
          {"sampling_seconds", seconds},
          {"sample_batch", options.sample_batch},
          {"sample_steps", sampling.diffusion.timesteps},
          {"sampling_peak_memory_bytes", peak_memory(device)}};
}

}  // namespace

std::string run_bench(const Config& config, const MpiContext& mpi, const torch::Device& device, const BenchOptions& options) {
  Config bench = config;
  // A run directory of its own, empty: the benchmark never resumes or touches a real run.
  const fs::path dir = fs::temp_directory_path() / ("ddpm-bench-" + mpi.broadcast_string(std::to_string(::getpid())));
  bench.run.dir = dir.string();
  bench.monitoring.enabled = false;
  bench.monitoring.eval_every = 0;
  nlohmann::json report;
  {
    Trainer trainer(bench, mpi, device);
    report = training_figures(trainer, bench, mpi, device, options);
    report["params"] = trainer.model()->parameter_count();
  }
  if (mpi.rank() == 0) fs::remove_all(dir);
  if (options.sample_batch > 0 && mpi.rank() == 0) report.update(sampling_figures(bench, device, options));
  report["impl"] = "ddpm 0.1.0 (C++, LibTorch " TORCH_VERSION ")";
  report["device"] = device.str();
  report["device_name"] = device_name(device);
  report["world_size"] = mpi.world_size();
  report["batch"] = config.train.batch_size;
  report["precision"] = config.train.precision;
  report["channels_last"] = config.train.channels_last;
  report["fused_adam"] = config.train.fused_adam;
  report["backend"] = config.distributed.backend;
  report["warmup"] = options.warmup;
  report["steps"] = options.steps;
  return mpi.rank() == 0 ? report.dump() : "";
}

}  // namespace ddpm
