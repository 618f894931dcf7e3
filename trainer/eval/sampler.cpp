#include "trainer/eval/sampler.h"

#include <cmath>
#include <optional>
#include <stdexcept>
#include <vector>

#include "data/pixels.h"
#include "data/splitmix64.h"
#include "distributed/stop_signal.h"
#include "trainer/diffusion/keyed_noise.h"
#include "trainer/model/autocast.h"
#include "trainer/model/step_graph.h"
#include "trainer/model/unet_inference.h"

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

namespace {

// The update's coefficients for every timestep index i as float32 (what the float64 tables cast to x's dtype give),
// [T, 7], on the device: all images of a step share t, so a step reads one row there (no host sync; a CUDA graph
// replays the same read for every i) and updates x in five elementwise passes.
//   ancestral (Algorithm 2, μ_θ = μ̃_t(x_t, x̂_0) of eq. 7): x̂_0 = a x_t − b ε (clipped), x_{t−1} = c x̂_0 + d x_t + σ z
//   DDIM (eq. 12): x̂_0 likewise, ε̂ = (a x_t − x̂_0) / b if clipped else ε, x_{t−1} = c x̂_0 + d ε̂ + σ z
// with a = √(1/ᾱ_t), b = √(1/ᾱ_t − 1) and σ = 0 at index 0 (no noise at step 1), the values of diffusion.cpp's
// p_sample and ddim_sample. An ancestral step of a learned variance reads σ from the model's v instead: column 4 is
// then the mask (0 at index 0, else 1), and columns 5 and 6 log β̃_t (clipped) and log β_t, the ends of
// learned_range's interpolation (diffusion.h's model_log_variance, with the same float32 operations).
torch::Tensor step_coefficients(const GaussianDiffusion& diffusion, bool ddim, double eta, const torch::Device& device) {
  const int64_t T = diffusion.num_timesteps();
  const auto host = [](const torch::Tensor& table) { return table.to(torch::kCPU, torch::kFloat64).contiguous(); };
  const torch::Tensor ac = host(diffusion.alphas_cumprod());
  const torch::Tensor min_log = host(diffusion.posterior_log_variance_clipped()), max_log = host(diffusion.log_betas());
  const bool learned_sigma = !ddim && diffusion.learns_variance();
  torch::Tensor c, d, sigma;
  if (ddim) {
    const GaussianDiffusion::DdimTables tables = diffusion.ddim_tables(eta);
    c = host(tables.x0_coef);
    d = host(tables.direction_coef);
    sigma = host(tables.sigma);
  } else {
    c = host(diffusion.posterior_mean_coef1());
    d = host(diffusion.posterior_mean_coef2());
    sigma = learned_sigma ? torch::ones({T}, torch::kFloat64) : (0.5 * host(diffusion.model_log_variance_table())).exp();
  }
  std::vector<double> rows;
  for (int64_t i = 0; i < T; ++i) {
    const double a = ac.data_ptr<double>()[i];
    rows.insert(rows.end(), {std::sqrt(1.0 / a), std::sqrt(1.0 / a - 1.0), c.data_ptr<double>()[i], d.data_ptr<double>()[i],
                             i == 0 || (ddim && eta == 0.0) ? 0.0 : sigma.data_ptr<double>()[i],
                             min_log.data_ptr<double>()[i], max_log.data_ptr<double>()[i]});
  }
  return torch::tensor(rows, torch::kFloat64).view({T, 7}).to(torch::kFloat32).to(device);
}

}  // namespace

torch::Tensor sample_images(UNet& model, const GaussianDiffusion& diffusion, int64_t count, uint64_t seed,
                            int64_t batch_size, const torch::Device& device, const SamplerOptions& options,
                            int64_t first_index, const SampleProgress& progress) {
  torch::NoGradGuard no_grad;
  model->eval();
  const UNetOptions& o = model->options();
  const std::vector<int64_t> item = {o.in_channels, o.image_size, o.image_size};
  const int64_t T = diffusion.num_timesteps();
  const bool ddim = options.kind == SamplerKind::kDdim;
  const bool noisy = !ddim || options.eta > 0.0;
  const bool learned = diffusion.learns_variance();  // the model's output holds ε, then v
  const ModelVariance variance = diffusion.model_variance();
  const torch::Tensor coefficients = step_coefficients(diffusion, ddim, options.eta, device);
  // All noise is keyed by (seed, step, image number) and drawn on the device: image i is the same whatever the
  // batch size or device, and no noise is made on the host and copied over at each of the T steps. The steps'
  // keys hash_combine(noise_key, i), computed once.
  const uint64_t noise_key = hash_combine(seed, 0x5a4d504c45ULL);
  const torch::Tensor step_keys =
      hash_combine_on_device(noise_key, torch::arange(T, torch::TensorOptions().dtype(torch::kLong).device(device)));
  // The model's time input for each index (the original timestep when respaced), on the host: filled in with t.
  const torch::Tensor model_time = diffusion.timestep_map().to(torch::kCPU, torch::kLong).contiguous();
  // On a CPU in float32, the model's inference form (unet_inference.h): the same ε up to float round-off, in a fraction of
  // the operator calls. The weights do not change during the run.
  std::optional<UNetInference> inference;
  if (UNetInference::supported(device) && !options.bf16) inference.emplace(model);
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
    const torch::Tensor index = torch::zeros({1}, on_device);  // the timestep index i
    const torch::Tensor t = torch::zeros({n}, on_device);      // the model's time input for i, per image
    const auto denoise = [&] {
      torch::Tensor output;
      if (inference) {
        output = inference->forward(x, t);
      } else {
        const AutocastScope autocast(device, options.bf16);
        output = model->forward(options.channels_last ? x.contiguous(torch::MemoryFormat::ChannelsLast) : x, t);
      }
      output = output.to(torch::kFloat32);
      const torch::Tensor eps = learned ? output.narrow(1, 0, item[0]) : output;
      const torch::Tensor row = coefficients.index_select(0, index);  // [1, 7]
      const auto coefficient = [&](int64_t k) { return row.select(1, k); };
      torch::Tensor x0 = torch::mul(x, coefficient(0));  // x̂_0 = x_t / √ᾱ_t − √(1/ᾱ_t − 1) ε, eq. 4 solved for x_0
      x0.addcmul_(eps, coefficient(1), -1.0);
      if (options.clip_denoised) x0.clamp_(-1.0, 1.0);
      if (ddim) {  // DDIM, eq. 12 (ε re-derived from the clipped x̂_0)
        const torch::Tensor direction =
            options.clip_denoised ? torch::mul(x, coefficient(0)).sub_(x0).div_(coefficient(1)) : eps;
        x.copy_(x0).mul_(coefficient(2));
        x.addcmul_(direction, coefficient(3));
      } else {  // Algorithm 2, line 4: x_{t−1} = μ̃_t(x_t, x̂_0) + σ_t z
        x.mul_(coefficient(3)).addcmul_(x0, coefficient(2));
      }
      if (!noisy) return;
      const torch::Tensor z = keyed_normal(step_keys.index_select(0, index).reshape({}), numbers, item, torch::kFloat32);
      if (ddim || !learned) {
        x.addcmul_(z, coefficient(4));
        return;
      }
      // σ = exp(½ log σ²) from v: log σ² = v (learned), or frac·log β_t + (1 − frac)·log β̃_t, frac = (v + 1)/2.
      const torch::Tensor v = output.narrow(1, item[0], item[0]);
      torch::Tensor log_variance = v;
      if (variance == ModelVariance::kLearnedRange) {
        const torch::Tensor frac = (v + 1.0) / 2.0;
        log_variance = frac * coefficient(6) + (1.0 - frac) * coefficient(5);
      }
      x.addcmul_(z, torch::exp(0.5 * log_variance).mul_(coefficient(4)));
    };
    // Only on GPUs: a config trained with graphs still samples on a CPU.
    const std::unique_ptr<StepGraph> graph =
        options.cuda_graph && device.is_cuda() ? std::make_unique<StepGraph>(device) : nullptr;
    for (int64_t i = T - 1; i >= 0; --i) {
      StopSignal::throw_if_requested("sampling");  // T model calls per batch: a stop waits for one at most
      index.fill_(i);
      t.fill_(model_time.data_ptr<int64_t>()[i]);
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
