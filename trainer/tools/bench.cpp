#include "trainer/tools/bench.h"

#include <sys/resource.h>

#include <nlohmann/json.hpp>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <optional>
#include <stdexcept>
#include <string>

#include "trainer/model/autocast.h"
#include "trainer/config/builders.h"
#include "trainer/diffusion/respace.h"
#include "trainer/eval/inference.h"
#include "trainer/monitoring/phase_timer.h"
#include "trainer/tools/profile.h"
#include "trainer/loop/trainer.h"
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

// The profile's own figures, plus its busy time against the step as timed without the profiler (whose host-side
// bookkeeping lengthens the profiled steps, not the device's work): a GPU busy for much less than the timed step
// waits on the host (launches, synchronization), one busy throughout is bound by its kernels.
nlohmann::json with_timed_step(nlohmann::json profile, double timed_ms_per_step) {
  profile["timed_ms_per_step"] = timed_ms_per_step;
  profile["busy_share_of_timed_step"] = profile["busy_ms_per_step"].get<double>() / timed_ms_per_step;
  return profile;
}

// Last of all, in a trainer of its own warmed up as the timed one was: no figure of the report is taken in this
// process after the profiler has run (CUPTI, once attached, may tax later launches). Every rank profiles (the
// steps are collective); rank 0 alone writes the trace.
nlohmann::json profile_training(const Config& config, const MpiContext& mpi, const torch::Device& device,
                                const BenchOptions& options, double timed_ms_per_step) {
  Trainer trainer(config, mpi, device);
  // With a CUDA graph, past its eager steps and its capture (trainer/step_graph.h): only replays are profiled.
  trainer.run_steps(config.train.cuda_graph ? std::max<int64_t>(options.warmup, 5) : options.warmup);
  trainer.synchronize();
  Profiler profiler(device);
  trainer.run_steps(options.profile_steps);
  trainer.synchronize();
  const std::string trace = mpi.rank() == 0 ? options.trace : "";
  return with_timed_step(summarize_profile(profiler.stop(trace), options.profile_steps), timed_ms_per_step);
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
  const torch::ScalarType matmul_dtype = config.train.precision == Precision::kBf16 ? torch::kBFloat16 : torch::kFloat32;
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

// One timed sampling run of `images` images (the kernels already warm).
double time_sampling(UNet& model, const GaussianDiffusion& diffusion, int64_t images, const torch::Device& device,
                     const SamplerOptions& sampler) {
  device_synchronize(device);
  const Clock::time_point start = Clock::now();
  sample_images(model, diffusion, images, 1, images, device, sampler);
  device_synchronize(device);
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// The fast samplers of the same model over the config's own T: 250 respaced ancestral steps (when T >= 250) and
// DDIM over 50 steps (eta 0; when T has an integer stride for 50), each timed once.
nlohmann::json fast_sampling_figures(const Config& config, UNet& model, const torch::Device& device,
                                     const BenchOptions& options) {
  const GaussianDiffusion base = make_diffusion(config).to(device);
  nlohmann::json rows = nlohmann::json::array();
  struct Fast {
    SamplerKind kind;
    std::string steps;
  };
  for (const Fast& fast : {Fast{SamplerKind::kAncestral, "250"}, Fast{SamplerKind::kDdim, "ddim50"}}) {
    nlohmann::json row = {{"sampler", sampler_kind_name(fast.kind)}, {"steps", fast.steps}};
    SamplerOptions sampler = sampler_options(config);
    sampler.kind = fast.kind;
    sampler.eta = 0.0;
    if (fast.kind == SamplerKind::kDdim) row["eta"] = 0.0;
    std::optional<GaussianDiffusion> respaced;
    try {
      if (fast.kind == SamplerKind::kAncestral && base.num_timesteps() < 250) {
        throw std::invalid_argument("T = " + std::to_string(base.num_timesteps()) + " < 250");
      }
      respaced.emplace(respace(base, fast.steps));
    } catch (const std::invalid_argument& e) {
      row["skipped"] = e.what();
      rows.push_back(row);
      continue;
    }
    const double seconds = time_sampling(model, *respaced, options.sample_batch, device, sampler);
    row["model_calls"] = respaced->num_timesteps();
    row["of_timesteps"] = base.num_timesteps();
    row["images_per_second"] = static_cast<double>(options.sample_batch) / seconds;
    row["seconds"] = seconds;
    row["ms_per_step"] = 1000.0 * seconds / static_cast<double>(respaced->num_timesteps());
    rows.push_back(row);
  }
  return rows;
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
  const double seconds = time_sampling(loaded.model, diffusion, options.sample_batch, device, sampler);
  nlohmann::json out = {{"sampling_images_per_second", static_cast<double>(options.sample_batch) / seconds},
                        {"sampling_seconds", seconds},
                        {"sample_batch", options.sample_batch},
                        {"sample_steps", sampling.diffusion.timesteps},
                        {"sampling_peak_memory_bytes", peak_memory(device)}};
  out["sampling_fast"] = fast_sampling_figures(config, loaded.model, device, options);
  // Not with CUDA graphs: a short run would capture a graph of its own, and its eager warm-up steps and the
  // capture would be profiled with the replays. The training profile covers the graphed step.
  if (options.profile_steps > 0 && !(config.train.cuda_graph && device.is_cuda())) {
    // At least the warm-up's 25 steps: a linear schedule stretched over fewer has β_T > 1.
    Config few = sampling;
    few.diffusion.timesteps = std::max<int64_t>(options.profile_steps, warm.diffusion.timesteps);
    const GaussianDiffusion profiled = make_diffusion(few).to(device);
    Profiler profiler(device);
    sample_images(loaded.model, profiled, options.sample_batch, 1, options.sample_batch, device, sampler);
    device_synchronize(device);
    out["sampling_profile"] = with_timed_step(summarize_profile(profiler.stop(), few.diffusion.timesteps),
                                              1000.0 * seconds / static_cast<double>(sampling.diffusion.timesteps));
  }
  return out;
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
  if (options.profile_steps > 0) {
    bench.run.dir = dir.string() + "-profile";
    report["profile"] = profile_training(bench, mpi, device, options, report["ms_per_step"].get<double>());
    if (mpi.rank() == 0) fs::remove_all(bench.run.dir);
  }
  report["impl"] = "ddpm 0.1.0 (C++, LibTorch " TORCH_VERSION ")";
  report["device"] = device.str();
  report["device_name"] = device_name(device);
  report["world_size"] = mpi.world_size();
  report["threads"] = torch::get_num_threads();
  report["batch"] = config.train.batch_size;
  report["precision"] = choice_name(config.train.precision);
  report["channels_last"] = config.train.channels_last;
  report["fused_adam"] = config.train.fused_adam;
  report["backend"] = choice_name(config.distributed.backend);
  report["warmup"] = options.warmup;
  report["steps"] = options.steps;
  report["profile_steps"] = options.profile_steps;
  return mpi.rank() == 0 ? report.dump() : "";
}

}  // namespace ddpm
