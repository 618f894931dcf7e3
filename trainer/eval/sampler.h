// Sampling from a trained model: ancestral (Ho et al. 2020, Algorithm 2) or DDIM (Song et al. 2021, eq. 12), over
// all T steps or a respaced subset of them (respace.h). Every draw is keyed by (seed, step, image index), so an image
// depends on (seed, index, sampler) alone: the same whatever the batch size, the rank it is sampled on and the
// number of ranks.
#pragma once
#include <torch/torch.h>

#include <cstdint>
#include <functional>
#include <string>
#include <utility>

#include "trainer/config/config.h"
#include "trainer/diffusion/diffusion.h"
#include "trainer/model/unet.h"

namespace ddpm {

enum class SamplerKind { kAncestral, kDdim };
inline constexpr std::pair<SamplerKind, const char*> kSamplerKindNames[] = {{SamplerKind::kAncestral, "ancestral"},
                                                                             {SamplerKind::kDdim, "ddim"}};
SamplerKind parse_sampler_kind(const std::string& name);
const char* sampler_kind_name(SamplerKind kind);

struct SamplerOptions {
  SamplerKind kind = SamplerKind::kAncestral;
  double eta = 0.0;            // DDIM only: 0 deterministic, 1 the ancestral step with σ² = β̃
  bool clip_denoised = true;   // x̂_0 clipped to [-1, 1] in each step (DDIM: ε re-derived from it, diffusion.h)
  bool bf16 = false;           // the model under bf16 autocast
  bool channels_last = false;  // NHWC inputs
  bool cuda_graph = false;     // each denoising step replayed from a CUDA graph (on GPUs; ignored on CPUs)
};
// The training config's speed options (train.precision, train.channels_last, train.cuda_graph) for sampling.
SamplerOptions sampler_options(const Config& config);

// "DDIM (η = 0) over 50 of 1000 steps" / "ancestral over all 1000 steps".
std::string describe_sampler(const SamplerOptions& options, const GaussianDiffusion& diffusion);

// Called after every model call with the images' worth of work done so far in this call (fractional: a batch of
// n images through k of K steps counts n·k/K).
using SampleProgress = std::function<void(double images_done)>;

// Images first_index .. first_index + count − 1 from x_T ~ N(0, I) through every step of `diffusion` (respaced or
// not), in batches of batch_size; returns uint8 [count, C, H, W]. x_T is keyed by the original T, so every sampler
// and step count starts image i from the same x_T. A stop request (StopSignal) throws StopRequested within one
// model call.
torch::Tensor sample_images(UNet& model, const GaussianDiffusion& diffusion, int64_t count, uint64_t seed,
                            int64_t batch_size, const torch::Device& device, const SamplerOptions& options = {},
                            int64_t first_index = 0, const SampleProgress& progress = {});

}  // namespace ddpm
