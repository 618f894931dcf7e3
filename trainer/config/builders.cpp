#include "trainer/config/builders.h"

#include <ATen/Context.h>

#include <cstdlib>

namespace ddpm {

UNetOptions unet_options(const Config& config) {
  UNetOptions options;
  static_cast<UNetArchitecture&>(options) = config.model;
  options.image_size = config.data.image_size;
  options.in_channels = config.data.channels;
  options.out_channels = model_output_channels(config.diffusion.model_variance, config.data.channels);
  return options;
}

GaussianDiffusion make_diffusion(const Config& config) {
  return GaussianDiffusion(make_beta_schedule(config.diffusion.schedule, config.diffusion.timesteps),
                           config.diffusion.model_variance);
}

WarmupSchedule lr_schedule(const Config& config) { return {config.train.lr, config.train.warmup_steps}; }

DatasetSpec dataset_spec(const Config& config, DataSplit split) {
  DatasetSpec spec;
  spec.format = choice_name(config.data.format);
  spec.path = config.data.path;
  spec.split = choice_name(split);
  spec.image_size = config.data.image_size;
  spec.channels = config.data.channels;
  return spec;
}

LoaderOptions loader_options(const Config& config, int64_t rank, int64_t world_size, const torch::Device& device) {
  LoaderOptions options;
  options.batch_size = config.train.batch_size;
  options.rank = rank;
  options.world_size = world_size;
  options.seed = config.run.seed;
  options.shard_tail = config.data.shard_tail;
  options.random_flip = config.data.random_flip;
  options.threads = config.data.loader_threads;
  options.prefetch_batches = config.data.prefetch_batches;
  options.device = device;
  return options;
}

namespace {

// train.cudnn_benchmark and train.deterministic, process-wide as PyTorch keeps them, before the first kernel.
void configure_kernels(const TrainConfig& train) {
  at::Context& context = at::globalContext();
  context.setBenchmarkCuDNN(train.cudnn_benchmark);
  context.setDeterministicCuDNN(train.deterministic);
  // Not warn-only: an op without a deterministic kernel stops the run, naming the op, rather than quietly making
  // a run that claims to be reproducible irreproducible.
  context.setDeterministicAlgorithms(train.deterministic, /*warn_only=*/false);
  // cuBLAS splits its reductions by the workspace it has; a fixed small one per stream makes its results
  // reproducible (cuBLAS documentation, "Results reproducibility"). Read when cuBLAS starts: a user's value wins.
  if (train.deterministic) setenv("CUBLAS_WORKSPACE_CONFIG", ":4096:8", /*overwrite=*/0);
}

}  // namespace

torch::Device select_device(const Config& config, int local_rank) {
  configure_kernels(config.train);
  const bool have_cuda = torch::cuda::is_available();
  const DeviceChoice choice = config.run.device;
  if (choice == DeviceChoice::kCpu || (choice == DeviceChoice::kAuto && !have_cuda)) return torch::kCPU;
  if (!have_cuda) {
    throw std::runtime_error(config.source + ": run.device is cuda, but no CUDA device is visible to this process");
  }
  const int64_t count = static_cast<int64_t>(torch::cuda::device_count());
  return torch::Device(torch::kCUDA, static_cast<c10::DeviceIndex>(local_rank % count));
}

}  // namespace ddpm
