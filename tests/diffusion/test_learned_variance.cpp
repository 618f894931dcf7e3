// Learned variances (Nichol & Dhariwal 2021, §3.1) and the objectives of losses.h against definitions written here:
// plain float64 loops for β, ᾱ and β̃, scalar Gaussian KLs, and improved-diffusion's formulas (gaussian_diffusion.py:
// p_mean_variance's LEARNED / LEARNED_RANGE, training_losses' hybrid and rescaled KL), with tolerances that a wrong
// sign, a swapped end of the interpolation or an off-by-one in t would break.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <vector>

#include "trainer/diffusion/diffusion.h"
#include "trainer/diffusion/losses.h"
#include "trainer/diffusion/respace.h"
#include "trainer/diffusion/schedule.h"

namespace {

using ddpm::GaussianDiffusion;
using ddpm::ModelVariance;
using ddpm::Objective;

const auto kF64 = torch::TensorOptions().dtype(torch::kFloat64);

struct Reference {  // the fixed variances' ingredients, from the betas alone
  std::vector<double> betas, alpha_bar, alpha_bar_prev, posterior_variance;
  double log_posterior_clipped(size_t i) const { return std::log(posterior_variance[i == 0 ? 1 : i]); }
};

Reference reference(const std::vector<double>& betas) {
  Reference r;
  r.betas = betas;
  double running = 1.0;
  for (const double beta : betas) {
    r.alpha_bar_prev.push_back(running);
    running *= 1.0 - beta;
    r.alpha_bar.push_back(running);
  }
  for (size_t i = 0; i < betas.size(); ++i) {
    r.posterior_variance.push_back(betas[i] * (1.0 - r.alpha_bar_prev[i]) / (1.0 - r.alpha_bar[i]));  // β̃_t, eq. 7
  }
  return r;
}

GaussianDiffusion linear(int64_t T, ModelVariance variance) {
  return GaussianDiffusion(ddpm::make_beta_schedule(ddpm::BetaSchedule::kLinear, T), variance);
}

// log σ² of every index for a constant v, float64 all the way ([T]).
torch::Tensor log_variance_at(const GaussianDiffusion& diffusion, double v) {
  const int64_t T = diffusion.num_timesteps();
  const torch::Tensor like = torch::zeros({T, 1, 1, 1}, kF64);
  return diffusion.model_log_variance(torch::full({T, 1, 1, 1}, v, kF64), torch::arange(T, torch::kLong), like).flatten();
}

TEST(LearnedVariance, ModelOutputHasTwiceTheChannelsOnlyWhenLearned) {
  EXPECT_EQ(ddpm::model_output_channels(ModelVariance::kFixedLarge, 3), 3);
  EXPECT_EQ(ddpm::model_output_channels(ModelVariance::kFixedSmall, 1), 1);
  EXPECT_EQ(ddpm::model_output_channels(ModelVariance::kLearned, 3), 6);
  EXPECT_EQ(ddpm::model_output_channels(ModelVariance::kLearnedRange, 1), 2);
  const GaussianDiffusion diffusion = linear(100, ModelVariance::kLearnedRange);
  const torch::Tensor x_t = torch::zeros({2, 3, 4, 4}, kF64);
  const torch::Tensor output = torch::arange(2 * 6 * 16, kF64).view({2, 6, 4, 4});
  const ddpm::ModelOutput split = diffusion.split_model_output(output, x_t);
  EXPECT_TRUE(torch::equal(split.eps, output.narrow(1, 0, 3)));  // ε first, then v (the reference's split)
  EXPECT_TRUE(torch::equal(split.v, output.narrow(1, 3, 3)));
  try {
    diffusion.split_model_output(torch::zeros_like(x_t), x_t);
    FAIL() << "a C-channel output was taken for a learned variance";
  } catch (const c10::Error& e) {
    EXPECT_NE(std::string(e.what()).find("learned"), std::string::npos) << e.what();
  }
  EXPECT_TRUE(torch::isnan(diffusion.model_variance_table()).all().item<bool>());  // no fixed table to misread
}

TEST(LearnedVariance, LearnedRangeEndsAreFixedSmallAndFixedLarge) {
  const int64_t T = 1000;
  const Reference r = reference(ddpm::make_beta_schedule(ddpm::BetaSchedule::kLinear, T));
  const GaussianDiffusion learned = linear(T, ModelVariance::kLearnedRange);
  const GaussianDiffusion small = linear(T, ModelVariance::kFixedSmall);
  const GaussianDiffusion large = linear(T, ModelVariance::kFixedLarge);
  const torch::Tensor at_minus_one = log_variance_at(learned, -1.0);  // frac 0
  const torch::Tensor at_plus_one = log_variance_at(learned, 1.0);    // frac 1
  const torch::Tensor at_zero = log_variance_at(learned, 0.0);        // frac ½
  for (int64_t i = 0; i < T; ++i) {
    const size_t k = static_cast<size_t>(i);
    // frac 0: fixed_small's log β̃_t (clipped: log β̃_2 at step 1), exactly the same table.
    EXPECT_EQ(at_minus_one[i].item<double>(), small.model_log_variance_table()[i].item<double>()) << i;
    EXPECT_NEAR(at_minus_one[i].item<double>(), r.log_posterior_clipped(k), 1e-12) << i;
    // frac 1: log β_t, fixed_large's value at every step but the first, where fixed_large takes log β̃_2 and the
    // interpolation log β_1 (the reference's max_log = log(betas)).
    EXPECT_NEAR(at_plus_one[i].item<double>(), std::log(r.betas[k]), 1e-12) << i;
    if (i > 0) {
      EXPECT_NEAR(at_plus_one[i].item<double>(), large.model_log_variance_table()[i].item<double>(), 1e-12) << i;
    }
    EXPECT_NEAR(at_zero[i].item<double>(), 0.5 * (std::log(r.betas[k]) + r.log_posterior_clipped(k)), 1e-12) << i;
  }
  EXPECT_GT(std::abs(at_plus_one[0].item<double>() - large.model_log_variance_table()[0].item<double>()), 0.5);
  // learned: log σ² is v itself, whatever t.
  const GaussianDiffusion raw = linear(T, ModelVariance::kLearned);
  EXPECT_TRUE(torch::equal(log_variance_at(raw, -3.25), torch::full({T}, -3.25, kF64)));
}

TEST(LearnedVariance, RespacedLearnedRangeInterpolatesTheRespacedBetas) {
  const int64_t T = 1000;
  const GaussianDiffusion base = linear(T, ModelVariance::kLearnedRange);
  const GaussianDiffusion spaced = ddpm::respace(base, "10");
  const std::vector<int64_t> kept = ddpm::space_timesteps(T, "10");
  const Reference full = reference(ddpm::make_beta_schedule(ddpm::BetaSchedule::kLinear, T));
  // The respaced β_i = 1 − ᾱ_{s_i}/ᾱ_{s_{i−1}} (improved-diffusion's SpacedDiffusion), and β̃ from those.
  std::vector<double> betas;
  double last = 1.0;
  for (const int64_t s : kept) {
    betas.push_back(1.0 - full.alpha_bar[static_cast<size_t>(s)] / last);
    last = full.alpha_bar[static_cast<size_t>(s)];
  }
  const Reference r = reference(betas);
  const torch::Tensor lo = log_variance_at(spaced, -1.0), hi = log_variance_at(spaced, 1.0);
  for (size_t i = 0; i < kept.size(); ++i) {
    EXPECT_NEAR(lo[static_cast<int64_t>(i)].item<double>(), r.log_posterior_clipped(i), 1e-12) << i;
    EXPECT_NEAR(hi[static_cast<int64_t>(i)].item<double>(), std::log(r.betas[i]), 1e-12) << i;
  }
  EXPECT_GT(hi[5].item<double>(), std::log(full.betas[static_cast<size_t>(kept[5])]) + 1.0);  // not the original β
}

// KL(N(m1, v1) ‖ N(m2, v2)) per dimension, in nats.
double scalar_kl(double m1, double v1, double m2, double v2) {
  return 0.5 * (std::log(v2 / v1) + v1 / v2 + (m1 - m2) * (m1 - m2) / v2 - 1.0);
}

TEST(LearnedVariance, BoundTermUsesTheLearnedVariance) {
  const int64_t T = 200;
  const Reference r = reference(ddpm::make_beta_schedule(ddpm::BetaSchedule::kLinear, T));
  for (const ModelVariance kind : {ModelVariance::kLearned, ModelVariance::kLearnedRange}) {
    const GaussianDiffusion diffusion = linear(T, kind);
    torch::manual_seed(4);
    const torch::Tensor x0 = torch::rand({3, 1, 2, 2}, kF64) * 2 - 1;
    const torch::Tensor x_t = torch::randn({3, 1, 2, 2}, kF64);
    const torch::Tensor eps = torch::randn({3, 1, 2, 2}, kF64);
    const torch::Tensor v = torch::rand({3, 1, 2, 2}, kF64) * 2 - 1 - (kind == ModelVariance::kLearned ? 5.0 : 0.0);
    const torch::Tensor t = torch::tensor({1, 77, 199}, torch::kLong);
    const torch::Tensor vb = diffusion.vb_terms_bpd(torch::cat({eps, v}, 1), x0, x_t, t, /*clip_denoised=*/false);
    for (int64_t b = 0; b < 3; ++b) {
      const size_t i = static_cast<size_t>(t[b].item<int64_t>());
      const double ab = r.alpha_bar[i], ab_prev = r.alpha_bar_prev[i], beta = r.betas[i];
      double sum = 0;
      for (int64_t p = 0; p < 4; ++p) {
        const double xt = x_t[b].flatten()[p].item<double>(), e = eps[b].flatten()[p].item<double>();
        const double vv = v[b].flatten()[p].item<double>(), x = x0[b].flatten()[p].item<double>();
        const auto posterior_mean = [&](double start) {
          return beta * std::sqrt(ab_prev) / (1 - ab) * start + (1 - ab_prev) * std::sqrt(1 - beta) / (1 - ab) * xt;
        };
        const double x0_hat = (xt - std::sqrt(1 - ab) * e) / std::sqrt(ab);
        const double log_var = kind == ModelVariance::kLearned
                                   ? vv
                                   : (vv + 1) / 2 * std::log(beta) + (1 - (vv + 1) / 2) * r.log_posterior_clipped(i);
        sum += scalar_kl(posterior_mean(x), r.posterior_variance[i], posterior_mean(x0_hat), std::exp(log_var));
      }
      EXPECT_NEAR(vb[b].item<double>(), sum / 4 / std::log(2.0), 1e-10) << ddpm::to_string(kind) << " t " << i;
    }
  }
}

// The per-example objectives on a model that outputs zeros (ε = 0, v = 0: frac ½), against the definitions.
TEST(Objectives, ReduceToTheirDefinitionsOnAZeroOutputModel) {
  const int64_t T = 400;
  const GaussianDiffusion diffusion = linear(T, ModelVariance::kLearnedRange);
  torch::manual_seed(9);
  const torch::Tensor x0 = torch::randint(0, 256, {4, 1, 3, 3}, kF64) / 127.5 - 1;
  const torch::Tensor noise = torch::randn_like(x0);
  const torch::Tensor t = torch::tensor({0, 1, 200, 399}, torch::kLong);
  const torch::Tensor x_t = diffusion.q_sample(x0, t, noise);
  const torch::Tensor zeros = torch::zeros({4, 2, 3, 3}, kF64);
  const auto loss = [&](Objective o) { return ddpm::training_losses(diffusion, o, zeros, x0, x_t, t, noise); };
  const torch::Tensor mse = noise.pow(2).flatten(1).mean(1);  // ‖ε − 0‖²
  const torch::Tensor kl = diffusion.vb_terms_bpd(zeros, x0, x_t, t, false);
  EXPECT_TRUE(torch::allclose(loss(Objective::kSimple).loss, mse, 0, 1e-15));
  EXPECT_TRUE(torch::equal(loss(Objective::kKl).loss, kl));
  // rescaled_kl: the term times T; hybrid: L_simple + (T / 1000)·L_t (λ = 0.001 on L_vlb ≈ T·L_t).
  EXPECT_TRUE(torch::allclose(loss(Objective::kRescaledKl).loss, kl * 400.0, 1e-15, 0));
  EXPECT_TRUE(torch::allclose(loss(Objective::kHybrid).loss, mse + kl * 0.4, 1e-15, 0));
  EXPECT_TRUE(torch::equal(loss(Objective::kHybrid).vb, kl));
  // L_t itself at index 200 from scalar densities: x̂_0 = x_t/√ᾱ, σ² = √(β β̃) (frac ½).
  const Reference r = reference(ddpm::make_beta_schedule(ddpm::BetaSchedule::kLinear, T));
  const double ab = r.alpha_bar[200], ab_prev = r.alpha_bar_prev[200], beta = r.betas[200];
  double sum = 0;
  for (int64_t p = 0; p < 9; ++p) {
    const double xt = x_t[2].flatten()[p].item<double>(), x = x0[2].flatten()[p].item<double>();
    const auto mean = [&](double start) {
      return beta * std::sqrt(ab_prev) / (1 - ab) * start + (1 - ab_prev) * std::sqrt(1 - beta) / (1 - ab) * xt;
    };
    sum += scalar_kl(mean(x), r.posterior_variance[200], mean(xt / std::sqrt(ab)), std::sqrt(beta * r.posterior_variance[200]));
  }
  EXPECT_NEAR(kl[2].item<double>(), sum / 9 / std::log(2.0), 1e-10);
  EXPECT_GT(kl[0].item<double>(), 0.0);  // index 0 is the decoder's NLL
}

TEST(Objectives, HybridBoundTermTrainsOnlyTheVariance) {
  const int64_t T = 1000;
  const GaussianDiffusion diffusion = linear(T, ModelVariance::kLearnedRange);
  torch::manual_seed(5);
  const torch::Tensor x0 = torch::rand({3, 1, 4, 4}, kF64) * 2 - 1;
  const torch::Tensor noise = torch::randn_like(x0);
  const torch::Tensor t = torch::tensor({0, 10, 900}, torch::kLong);
  const torch::Tensor x_t = diffusion.q_sample(x0, t, noise);
  const torch::Tensor output = (torch::randn({3, 2, 4, 4}, kF64) * 0.3).requires_grad_(true);
  const ddpm::TrainingLosses hybrid = ddpm::training_losses(diffusion, Objective::kHybrid, output, x0, x_t, t, noise);
  // The bound term alone: gradient on v's channels, none on ε's.
  const torch::Tensor vb_grad = torch::autograd::grad({hybrid.vb.sum()}, {output}, {}, /*retain_graph=*/true)[0];
  EXPECT_EQ(vb_grad.narrow(1, 0, 1).abs().max().item<double>(), 0.0);
  EXPECT_GT(vb_grad.narrow(1, 1, 1).abs().max().item<double>(), 1e-8);
  // The whole hybrid: ε's gradient is L_simple's, v's is (T/1000) times the bound term's.
  const torch::Tensor grad = torch::autograd::grad({hybrid.loss.sum()}, {output}, {}, true)[0];
  const torch::Tensor eps = output.narrow(1, 0, 1);
  const torch::Tensor mse_grad = 2.0 * (eps - noise) / 16.0;  // d/dε of mean((ε − noise)²) over 16 dimensions
  EXPECT_TRUE(torch::allclose(grad.narrow(1, 0, 1), mse_grad, 1e-12, 1e-14));
  EXPECT_TRUE(torch::allclose(grad.narrow(1, 1, 1), vb_grad.narrow(1, 1, 1), 1e-12, 1e-14));  // T/1000 = 1
  // kl, unlike hybrid, trains the mean through the bound.
  const ddpm::TrainingLosses kl = ddpm::training_losses(diffusion, Objective::kKl, output, x0, x_t, t, noise);
  const torch::Tensor kl_grad = torch::autograd::grad({kl.loss.sum()}, {output})[0];
  EXPECT_GT(kl_grad.narrow(1, 0, 1).abs().max().item<double>(), 1e-6);
}

TEST(Sampling, AncestralStepWithALearnedVarianceScalesNoiseByItsSigma) {
  const GaussianDiffusion diffusion = linear(1000, ModelVariance::kLearned);
  const torch::Tensor x_t = torch::randn({2, 1, 3, 3}, kF64);
  const torch::Tensor eps = torch::randn_like(x_t);
  const torch::Tensor v = torch::full_like(x_t, -4.0);
  const torch::Tensor noise = torch::randn_like(x_t);
  const torch::Tensor t = torch::tensor({0, 500}, torch::kLong);
  const torch::Tensor output = torch::cat({eps, v}, 1);
  const torch::Tensor x_prev = diffusion.p_sample(output, x_t, t, noise, /*clip_denoised=*/false);
  const ddpm::ReverseStep p = diffusion.p_mean_variance(output, x_t, t, false);
  EXPECT_TRUE(torch::allclose(x_prev[0], p.mean[0]));  // no noise at step 1
  EXPECT_TRUE(torch::allclose(x_prev[1], p.mean[1] + std::exp(-2.0) * noise[1], 1e-12, 1e-12));
  // The mean is the fixed-variance model's: μ̃(x̂_0(ε), x_t), whatever v.
  const ddpm::ReverseStep fixed = linear(1000, ModelVariance::kFixedLarge).p_mean_variance(eps, x_t, t, false);
  EXPECT_TRUE(torch::allclose(p.mean, fixed.mean, 0, 1e-15));
}

}  // namespace
