// sample_images against the samplers' reference definitions: a loop written here from GaussianDiffusion's own
// steps (p_sample, Algorithm 2; ddim_sample, eq. 12) on the plain forward, with the sampler's keyed draws; on a
// respaced process, so the model's time input goes through the timestep map. And an image is the same whatever
// its batch, bit for bit.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "data/pixels.h"
#include "data/splitmix64.h"
#include "trainer/diffusion/keyed_noise.h"
#include "trainer/diffusion/respace.h"
#include "trainer/diffusion/schedule.h"
#include "trainer/eval/sampler.h"

namespace {

ddpm::UNet perturbed_model(int64_t out_channels = 1) {
  ddpm::UNetOptions o = ddpm::ddpm_cifar10_unet();
  o.image_size = 8;
  o.in_channels = 1;
  o.out_channels = out_channels;
  o.channels = 32;
  o.channel_mult = {1, 2};
  o.num_res_blocks = 1;
  o.attention_resolutions = {4};
  torch::manual_seed(11);
  ddpm::UNet model(o);
  torch::NoGradGuard no_grad;
  for (torch::Tensor& p : model->parameters()) p.add_(torch::randn_like(p) * 0.05);  // ε = 0 no more
  return model;
}

// The sampler's draws (sampler.cpp): x_T keyed by the original T, step i's noise by i, under the seed's key.
torch::Tensor reference_samples(ddpm::UNet& model, const ddpm::GaussianDiffusion& diffusion, int64_t count, uint64_t seed,
                                const ddpm::SamplerOptions& options) {
  torch::NoGradGuard no_grad;
  model->eval();
  const int64_t side = model->options().image_size, channels = model->options().in_channels;
  const std::vector<int64_t> item = {channels, side, side};
  const uint64_t noise_key = ddpm::hash_combine(seed, 0x5a4d504c45ULL);
  const torch::Tensor numbers = torch::arange(count, torch::kLong);
  torch::Tensor x = ddpm::keyed_normal(ddpm::hash_combine(noise_key, static_cast<uint64_t>(diffusion.original_num_timesteps())),
                                       numbers, item, torch::kFloat32);
  const bool ddim = options.kind == ddpm::SamplerKind::kDdim;
  const ddpm::GaussianDiffusion::DdimTables tables = diffusion.ddim_tables(options.eta);
  for (int64_t i = diffusion.num_timesteps() - 1; i >= 0; --i) {
    const torch::Tensor t = torch::full({count}, i, torch::kLong);
    const torch::Tensor eps = model->forward(x, diffusion.model_timesteps(t));
    const torch::Tensor z = ddpm::keyed_normal(ddpm::hash_combine(noise_key, static_cast<uint64_t>(i)), numbers, item, torch::kFloat32);
    x = ddim ? diffusion.ddim_sample(tables, eps, x, t, options.eta > 0.0 ? z : torch::zeros_like(z), options.clip_denoised)
             : diffusion.p_sample(eps, x, t, z, options.clip_denoised);
  }
  return ddpm::model_range_to_pixels(x);
}

struct Case {
  const char* name;
  ddpm::SamplerKind kind;
  double eta;
  bool clip;
  ddpm::ModelVariance variance;
};

// Three images of the case's sampler on an 8-step respacing of T = 1000 (the model sees t = 0, 143, ..., 999), checked
// against reference_samples; returns them.
torch::Tensor sample_like_the_reference(ddpm::UNet& model, const Case& c) {
  const ddpm::GaussianDiffusion base(ddpm::make_beta_schedule(ddpm::BetaSchedule::kLinear, 1000), c.variance);
  const ddpm::GaussianDiffusion diffusion = ddpm::respace(base, "8");
  ddpm::SamplerOptions options;
  options.kind = c.kind;
  options.eta = c.eta;
  options.clip_denoised = c.clip;
  const torch::Tensor images = ddpm::sample_images(model, diffusion, 3, 21, 3, torch::kCPU, options);
  const torch::Tensor expected = reference_samples(model, diffusion, 3, 21, options);
  EXPECT_EQ(images.sizes(), expected.sizes()) << c.name;
  // Float round-off (the inference form, float32 coefficients) moves a pixel across a level at most rarely.
  const torch::Tensor difference = (images.to(torch::kInt) - expected.to(torch::kInt)).abs();
  EXPECT_LE(difference.max().item<int>(), 1) << c.name;
  EXPECT_LT(difference.gt(0).to(torch::kFloat64).mean().item<double>(), 0.01) << c.name;
  EXPECT_GT(images.to(torch::kFloat64).std().item<double>(), 5.0) << c.name;  // not a flat image
  return images;
}

// The mean absolute difference of two uint8 image sets, in levels.
double mean_level_difference(const torch::Tensor& a, const torch::Tensor& b) {
  return (a.to(torch::kInt) - b.to(torch::kInt)).abs().to(torch::kFloat64).mean().item<double>();
}

TEST(Sampler, FollowsTheReferenceStepsOnARespacedProcess) {
  ddpm::UNet model = perturbed_model();
  const std::vector<Case> cases = {
      {"ancestral, fixed_large", ddpm::SamplerKind::kAncestral, 0.0, true, ddpm::ModelVariance::kFixedLarge},
      {"ancestral, fixed_small, no clip", ddpm::SamplerKind::kAncestral, 0.0, false, ddpm::ModelVariance::kFixedSmall},
      {"ddim eta 0", ddpm::SamplerKind::kDdim, 0.0, true, ddpm::ModelVariance::kFixedLarge},
      {"ddim eta 1, no clip", ddpm::SamplerKind::kDdim, 1.0, false, ddpm::ModelVariance::kFixedLarge},
  };
  std::vector<torch::Tensor> outputs;
  for (const Case& c : cases) outputs.push_back(sample_like_the_reference(model, c));
  // DDIM with η = 1 has σ_t² = β̃_t (eq. 16): the ancestral step with fixed_small variance, the same draws, so
  // the same images up to round-off. Every other pair is a different sampler, far apart.
  const auto mean_difference = [&](size_t a, size_t b) { return mean_level_difference(outputs[a], outputs[b]); };
  EXPECT_LE((outputs[1].to(torch::kInt) - outputs[3].to(torch::kInt)).abs().max().item<int>(), 1);
  for (size_t a = 0; a < outputs.size(); ++a) {
    for (size_t b = a + 1; b < outputs.size(); ++b) {
      if (a == 1 && b == 3) continue;
      EXPECT_GT(mean_difference(a, b), 2.0) << cases[a].name << " vs " << cases[b].name;
    }
  }
}

// A learned variance: the ancestral step's σ comes from the model's v (p_sample's exp(½ log σ²) per pixel), DDIM
// ignores it; the ε channels are the first C of the 2C outputs.
TEST(Sampler, LearnedVarianceFollowsTheReferenceSteps) {
  ddpm::UNet model = perturbed_model(/*out_channels=*/2);
  {
    // v of about ±1 and beyond: exercises both ends of learned_range's interpolation (and past them).
    torch::NoGradGuard no_grad;
    model->named_parameters()["conv_out.bias"].narrow(0, 1, 1).fill_(0.7);
  }
  const std::vector<Case> cases = {
      {"ancestral, learned_range", ddpm::SamplerKind::kAncestral, 0.0, true, ddpm::ModelVariance::kLearnedRange},
      {"ancestral, learned, no clip", ddpm::SamplerKind::kAncestral, 0.0, false, ddpm::ModelVariance::kLearned},
      {"ddim eta 0, learned_range", ddpm::SamplerKind::kDdim, 0.0, true, ddpm::ModelVariance::kLearnedRange},
  };
  std::vector<torch::Tensor> outputs;
  for (const Case& c : cases) outputs.push_back(sample_like_the_reference(model, c));
  const auto mean_difference = [&](size_t a, size_t b) { return mean_level_difference(outputs[a], outputs[b]); };
  EXPECT_GT(mean_difference(0, 1), 2.0);  // v read as log σ² itself is another variance than the interpolation
  EXPECT_GT(mean_difference(0, 2), 2.0);
}

TEST(Sampler, AnImageIsTheSameWhateverItsBatchAndFirstIndex) {
  ddpm::UNet model = perturbed_model();
  const ddpm::GaussianDiffusion diffusion =
      ddpm::respace(ddpm::GaussianDiffusion(ddpm::make_beta_schedule(ddpm::BetaSchedule::kLinear, 1000),
                                            ddpm::ModelVariance::kFixedLarge),
                    "6");
  const torch::Tensor five = ddpm::sample_images(model, diffusion, 5, 3, 5, torch::kCPU);
  EXPECT_TRUE(torch::equal(five, ddpm::sample_images(model, diffusion, 5, 3, 2, torch::kCPU)));
  // Images 2..4 drawn on their own (another rank's shard): the same.
  EXPECT_TRUE(torch::equal(five.narrow(0, 2, 3), ddpm::sample_images(model, diffusion, 3, 3, 1, torch::kCPU, {}, 2)));
}

}  // namespace
