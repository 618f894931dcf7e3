#include "trainer/eval/sampler.h"

#include <stdexcept>

#include "data/pixels.h"
#include "data/splitmix64.h"
#include "distributed/stop_signal.h"
#include "trainer/diffusion/keyed_noise.h"
#include "trainer/model/autocast.h"
#include "trainer/model/step_graph.h"

namespace ddpm {

SamplerKind parse_sampler_kind(const std::string& name) {
  for (const auto& [kind, text] : kSamplerKindNames) {
    if (name == text) return kind;
  }
  throw std::invalid_argument("unknown sampler '" + name + "' (expected ancestral or ddim)");
}

const char* sampler_kind_name(SamplerKind kind) {
  for (const auto& [value, text] : kSamplerKindNames) {
    if (value == kind) return text;
  }
  return "unknown";
}

SamplerOptions sampler_options(const Config& config) {
  SamplerOptions options;
  options.bf16 = config.train.precision == Precision::kBf16;
  options.channels_last = config.train.channels_last;
  options.cuda_graph = config.train.cuda_graph;
  return options;
}

std::string describe_sampler(const SamplerOptions& options, const GaussianDiffusion& diffusion) {
  std::string text = options.kind == SamplerKind::kDdim ? "DDIM (eta " + std::to_string(options.eta).substr(0, 4) + ")"
                                                         : std::string("ancestral");
  text += diffusion.respaced() ? " over " + std::to_string(diffusion.num_timesteps()) + " of " +
                                     std::to_string(diffusion.original_num_timesteps()) + " steps"
                               : " over all " + std::to_string(diffusion.num_timesteps()) + " steps";
  return text + (options.clip_denoised ? ", x0 clipped" : ", x0 not clipped");
}

torch::Tensor sample_images(UNet& model, const GaussianDiffusion& diffusion, int64_t count, uint64_t seed,
                            int64_t batch_size, const torch::Device& device, const SamplerOptions& options,
                            int64_t first_index, const SampleProgress& progress) {
  torch::NoGradGuard no_grad;
  model->eval();
  const UNetOptions& o = model->options();
  const std::vector<int64_t> item = {o.in_channels, o.image_size, o.image_size};
  const int64_t T = diffusion.num_timesteps();
  const bool ddim = options.kind == SamplerKind::kDdim;
  const GaussianDiffusion::DdimTables ddim_tables = ddim ? diffusion.ddim_tables(options.eta) : GaussianDiffusion::DdimTables{};
  const bool noisy = !ddim || options.eta > 0.0;
  // All noise is keyed by (seed, step, image number) and drawn on the device: image i is the same whatever the
  // batch size or device, and no noise is made on the host and copied over at each of the T steps.
  const uint64_t noise_key = hash_combine(seed, 0x5a4d504c45ULL);
  std::vector<torch::Tensor> chunks;
  double done_before = 0.0;
  for (int64_t start = 0; start < count; start += batch_size) {
    const int64_t n = std::min(batch_size, count - start);
    const auto on_device = torch::TensorOptions().dtype(torch::kLong).device(device);
    const torch::Tensor numbers = torch::arange(first_index + start, first_index + start + n, on_device);
    // One denoising step, in place, reading the timestep from device tensors that are refilled before each step:
    // so that a CUDA graph can capture it once and replay it T times.
    const torch::Tensor x = keyed_normal(hash_combine(noise_key, static_cast<uint64_t>(diffusion.original_num_timesteps())),
                                         numbers, item, torch::kFloat32);  // x_T ~ N(0, I)
    const torch::Tensor index = torch::zeros({}, on_device);
    const torch::Tensor t = torch::zeros({n}, on_device);
    const auto denoise = [&] {
      torch::Tensor eps;
      {
        const AutocastScope autocast(device, options.bf16);
        eps = model->forward(options.channels_last ? x.contiguous(torch::MemoryFormat::ChannelsLast) : x,
                             diffusion.model_timesteps(t));
      }
      eps = eps.to(torch::kFloat32);
      const torch::Tensor z = noisy ? keyed_normal(hash_combine_on_device(noise_key, index), numbers, item, torch::kFloat32)
                                    : torch::Tensor();
      if (ddim) {
        x.copy_(diffusion.ddim_sample(ddim_tables, eps, x, t, z, options.clip_denoised));  // DDIM, eq. 12
      } else {
        x.copy_(diffusion.p_sample(eps, x, t, z, options.clip_denoised));  // Algorithm 2, line 4
      }
    };
    // Only on GPUs: a config trained with graphs still samples on a CPU.
    const std::unique_ptr<StepGraph> graph =
        options.cuda_graph && device.is_cuda() ? std::make_unique<StepGraph>(device) : nullptr;
    for (int64_t i = T - 1; i >= 0; --i) {
      StopSignal::throw_if_requested("sampling");  // T model calls per batch: a stop waits for one at most
      index.fill_(i);
      t.fill_(i);
      if (graph) {
        graph->run(denoise);
      } else {
        denoise();
      }
      if (progress) progress(done_before + static_cast<double>(n) * static_cast<double>(T - i) / static_cast<double>(T));
    }
    chunks.push_back(model_range_to_pixels(x).cpu());
    done_before += static_cast<double>(n);
  }
  return torch::cat(chunks);
}

}  // namespace ddpm
