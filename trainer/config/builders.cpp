#include "trainer/config/builders.h"

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

torch::Device select_device(const Config& config, int local_rank) {
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
