#include "trainer/config/builders.h"

#include <sstream>

namespace ddpm {

UNetOptions unet_options(const Config& config) {
  UNetOptions options;
  options.image_size = config.data.image_size;
  options.in_channels = config.data.channels;
  options.out_channels = config.data.channels;
  options.channels = config.model.channels;
  options.channel_mult = config.model.channel_mult;
  options.num_res_blocks = config.model.num_res_blocks;
  options.attention_resolutions = config.model.attention_resolutions;
  options.dropout = config.model.dropout;
  return options;
}

GaussianDiffusion make_diffusion(const Config& config) {
  return GaussianDiffusion(make_beta_schedule(parse_beta_schedule(config.diffusion.schedule), config.diffusion.timesteps),
                           parse_model_variance(config.diffusion.model_variance));
}

DatasetSpec dataset_spec(const Config& config, const std::string& split) {
  DatasetSpec spec;
  spec.format = config.data.format;
  spec.path = config.data.path;
  spec.split = split;
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
  options.shard_tail = parse_shard_tail(config.data.shard_tail);
  options.random_flip = config.data.random_flip;
  options.threads = config.data.loader_threads;
  options.prefetch_batches = config.data.prefetch_batches;
  options.device = device;
  return options;
}

torch::Device select_device(const Config& config, int local_rank) {
  const bool have_cuda = torch::cuda::is_available();
  if (config.run.device == "cpu" || (config.run.device == "auto" && !have_cuda)) return torch::kCPU;
  if (!have_cuda) {
    throw std::runtime_error(config.source + ": run.device is cuda, but no CUDA device is visible to this process");
  }
  const int64_t count = static_cast<int64_t>(torch::cuda::device_count());
  return torch::Device(torch::kCUDA, static_cast<c10::DeviceIndex>(local_rank % count));
}

std::string model_shape_signature(const Config& config) {
  const auto list = [](const std::vector<int64_t>& values) {
    std::string text = "[";
    for (size_t i = 0; i < values.size(); ++i) text += (i ? ", " : "") + std::to_string(values[i]);
    return text + "]";
  };
  std::ostringstream out;
  out << "data.image_size: " << config.data.image_size << "\n"
      << "data.channels: " << config.data.channels << "\n"
      << "model.channels: " << config.model.channels << "\n"
      << "model.channel_mult: " << list(config.model.channel_mult) << "\n"
      << "model.num_res_blocks: " << config.model.num_res_blocks << "\n"
      << "model.attention_resolutions: " << list(config.model.attention_resolutions) << "\n"
      << "diffusion.timesteps: " << config.diffusion.timesteps << "\n"
      << "train.ema_rates: [";  // the EMA shadows a checkpoint holds
  for (size_t i = 0; i < config.train.ema_rates.size(); ++i) out << (i ? ", " : "") << config.train.ema_rates[i];
  out << "]\n";
  return out.str();
}

}  // namespace ddpm
