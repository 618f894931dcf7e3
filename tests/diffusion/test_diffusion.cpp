// The Gaussian diffusion math against values computed independently in the test (plain float64 loops and
// scalar Gaussian densities), with tolerances tight enough to catch a wrong sign or an off-by-one in t.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <random>
#include <vector>

#include "trainer/diffusion/diffusion.h"
#include "trainer/diffusion/gaussian.h"
#include "trainer/diffusion/schedule.h"

namespace {

const auto kF64 = torch::TensorOptions().dtype(torch::kFloat64);

// Independent reference: β_i of the paper's linear schedule for T = 1000, ᾱ as a running product.
std::vector<double> reference_linear_betas(int64_t T) {
  std::vector<double> betas;
  const double scale = 1000.0 / static_cast<double>(T);
  for (int64_t i = 0; i < T; ++i) betas.push_back(scale * 1e-4 + (scale * 0.02 - scale * 1e-4) * i / (T - 1.0));
  return betas;
}

double alpha_bar(const std::vector<double>& betas, int64_t index) {  // ᾱ at timestep index (step index+1)
  long double product = 1.0L;
  for (int64_t s = 0; s <= index; ++s) product *= 1.0L - betas[static_cast<size_t>(s)];
  return static_cast<double>(product);
}

double log_normal(double x, double mean, double variance) {
  return -0.5 * std::log(2 * M_PI * variance) - (x - mean) * (x - mean) / (2 * variance);
}

double value(const torch::Tensor& table, int64_t i) { return table[i].item<double>(); }

ddpm::GaussianDiffusion linear_diffusion(int64_t T, ddpm::ModelVariance variance = ddpm::ModelVariance::kFixedLarge) {
  return ddpm::GaussianDiffusion(ddpm::make_beta_schedule(ddpm::BetaSchedule::kLinear, T), variance);
}

TEST(Schedule, LinearMatchesThePaperAndScalesWithT) {
  const std::vector<double> betas = ddpm::make_beta_schedule(ddpm::BetaSchedule::kLinear, 1000);
  ASSERT_EQ(betas.size(), 1000u);
  EXPECT_DOUBLE_EQ(betas.front(), 1e-4);
  EXPECT_DOUBLE_EQ(betas.back(), 0.02);
  const std::vector<double> reference = reference_linear_betas(1000);
  for (size_t i = 0; i < betas.size(); ++i) EXPECT_NEAR(betas[i], reference[i], 1e-15);
  const std::vector<double> short_betas = ddpm::make_beta_schedule(ddpm::BetaSchedule::kLinear, 250);
  EXPECT_DOUBLE_EQ(short_betas.front(), 4e-4);
  EXPECT_DOUBLE_EQ(short_betas.back(), 0.08);
}

TEST(Schedule, CosineFollowsAlphaBarAndIsClipped) {
  const int64_t T = 1000;
  const std::vector<double> betas = ddpm::make_beta_schedule(ddpm::BetaSchedule::kCosine, T);
  const auto f = [&](double t) { return std::pow(std::cos((t / T + 0.008) / 1.008 * M_PI / 2), 2); };
  for (int64_t i = 0; i < T; ++i) {
    const double expected = std::min(1.0 - f(i + 1.0) / f(static_cast<double>(i)), 0.999);
    EXPECT_NEAR(betas[static_cast<size_t>(i)], expected, 1e-14) << "index " << i;
    EXPECT_LE(betas[static_cast<size_t>(i)], 0.999);
  }
  EXPECT_DOUBLE_EQ(betas.back(), 0.999);  // the last step hits the clip
  // ᾱ_t of the schedule equals f(t)/f(0) wherever no clipping happened.
  const ddpm::GaussianDiffusion diffusion(betas, ddpm::ModelVariance::kFixedLarge);
  EXPECT_NEAR(value(diffusion.alphas_cumprod(), 499), f(500.0) / f(0.0), 1e-12);
}

TEST(Schedule, RejectsBadInput) {
  EXPECT_THROW(ddpm::make_beta_schedule(ddpm::BetaSchedule::kLinear, 1), std::invalid_argument);
  EXPECT_THROW(ddpm::parse_beta_schedule("quadratic"), std::invalid_argument);
  EXPECT_THROW(ddpm::GaussianDiffusion({0.1, 0.0, 0.2}, ddpm::ModelVariance::kFixedLarge), std::invalid_argument);
  // T = 20 on the linear schedule makes β_T = 1: refused rather than dividing by ᾱ_T = 0 later.
  EXPECT_THROW(ddpm::GaussianDiffusion(ddpm::make_beta_schedule(ddpm::BetaSchedule::kLinear, 20),
                                       ddpm::ModelVariance::kFixedLarge),
               std::invalid_argument);
}

TEST(Tables, AlphaBarIsMonotoneAndMatchesAnIndependentProduct) {
  const ddpm::GaussianDiffusion diffusion = linear_diffusion(1000);
  const torch::Tensor ac = diffusion.alphas_cumprod();
  ASSERT_EQ(ac.scalar_type(), torch::kFloat64);
  EXPECT_LT((ac.slice(0, 1) - ac.slice(0, 0, -1)).max().item<double>(), 0.0);
  const std::vector<double> betas = reference_linear_betas(1000);
  EXPECT_NEAR(value(ac, 0), 1.0 - 1e-4, 1e-16);
  EXPECT_NEAR(value(ac, 999), alpha_bar(betas, 999), 1e-17);
  EXPECT_NEAR(value(ac, 999), 4.0358e-5, 1e-8);  // ᾱ_T of the paper's schedule
  EXPECT_DOUBLE_EQ(value(diffusion.alphas_cumprod_prev(), 0), 1.0);
  EXPECT_DOUBLE_EQ(value(diffusion.alphas_cumprod_prev(), 500), value(ac, 499));
}

TEST(Tables, PosteriorVarianceAndCoefficientsMatchEquationSeven) {
  const int64_t T = 1000;
  const ddpm::GaussianDiffusion diffusion = linear_diffusion(T);
  const std::vector<double> betas = reference_linear_betas(T);
  for (int64_t i : {1, 2, 10, 500, 998, 999}) {
    const double beta = betas[static_cast<size_t>(i)];
    const double ac = alpha_bar(betas, i), ac_prev = alpha_bar(betas, i - 1);
    EXPECT_NEAR(value(diffusion.posterior_variance(), i), beta * (1 - ac_prev) / (1 - ac), 1e-15) << i;
    EXPECT_NEAR(value(diffusion.posterior_mean_coef1(), i), std::sqrt(ac_prev) * beta / (1 - ac), 1e-12) << i;
    EXPECT_NEAR(value(diffusion.posterior_mean_coef2(), i), std::sqrt(1 - beta) * (1 - ac_prev) / (1 - ac), 1e-12) << i;
  }
  // Step 1 (index 0): β̃_1 = 0, its log is clipped to log β̃_2; the posterior mean is x_0 itself.
  EXPECT_EQ(value(diffusion.posterior_variance(), 0), 0.0);
  EXPECT_DOUBLE_EQ(value(diffusion.posterior_log_variance_clipped(), 0),
                   std::log(value(diffusion.posterior_variance(), 1)));
  EXPECT_NEAR(value(diffusion.posterior_mean_coef1(), 0), 1.0, 1e-12);  // β_1/(1-(1-β_1)) up to rounding
  EXPECT_NEAR(value(diffusion.posterior_mean_coef2(), 0), 0.0, 1e-15);
}

TEST(Tables, ModelVarianceConventions) {
  const ddpm::GaussianDiffusion large = linear_diffusion(1000, ddpm::ModelVariance::kFixedLarge);
  const ddpm::GaussianDiffusion small = linear_diffusion(1000, ddpm::ModelVariance::kFixedSmall);
  // fixed_large: [β̃_2, β_2, β_3, ...]; fixed_small: clipped β̃.
  EXPECT_DOUBLE_EQ(value(large.model_variance_table(), 0), value(large.posterior_variance(), 1));
  EXPECT_DOUBLE_EQ(value(large.model_variance_table(), 1), value(large.betas(), 1));
  EXPECT_DOUBLE_EQ(value(large.model_variance_table(), 999), 0.02);
  EXPECT_DOUBLE_EQ(value(large.model_log_variance_table(), 0), std::log(value(large.posterior_variance(), 1)));
  EXPECT_DOUBLE_EQ(value(small.model_log_variance_table(), 0), value(small.posterior_log_variance_clipped(), 0));
  EXPECT_DOUBLE_EQ(value(small.model_variance_table(), 400), value(small.posterior_variance(), 400));
}

// q(x_t|x_{t-1}) q(x_{t-1}|x_0) = q(x_{t-1}|x_t,x_0) q(x_t|x_0) pointwise (Bayes, with the Markov property),
// every density evaluated from scalar formulas written here, not from the code under test.
TEST(Posterior, SatisfiesBayesRulePointwise) {
  const int64_t T = 1000;
  const ddpm::GaussianDiffusion diffusion = linear_diffusion(T);
  const std::vector<double> betas = reference_linear_betas(T);
  std::mt19937_64 rng(7);
  std::uniform_real_distribution<double> uniform(-1.0, 1.0);
  std::normal_distribution<double> normal(0.0, 1.5);
  for (int64_t index : {1, 2, 5, 100, 500, 999}) {
    const double beta = betas[static_cast<size_t>(index)];
    const double ac = alpha_bar(betas, index), ac_prev = alpha_bar(betas, index - 1);
    for (int trial = 0; trial < 20; ++trial) {
      const double x0 = uniform(rng), x_prev = normal(rng), x_t = normal(rng);
      const double lhs = log_normal(x_t, std::sqrt(1 - beta) * x_prev, beta) +
                         log_normal(x_prev, std::sqrt(ac_prev) * x0, 1 - ac_prev);
      const torch::Tensor t = torch::tensor({index}, torch::kLong);
      const ddpm::DiagonalGaussian post =
          diffusion.q_posterior(torch::tensor({x0}, kF64), torch::tensor({x_t}, kF64), t);
      const double rhs = log_normal(x_prev, post.mean.item<double>(), post.variance.item<double>()) +
                         log_normal(x_t, std::sqrt(ac) * x0, 1 - ac);
      EXPECT_NEAR(lhs, rhs, 1e-8 * std::max(1.0, std::abs(lhs))) << "index " << index << " trial " << trial;
    }
  }
}

// The closed form (eq. 7) equals the product of the two Gaussians in x_{t-1}, completed to a square:
// precision α_t/β_t + 1/(1-ᾱ_{t-1}), mean = variance · (√α_t x_t/β_t + √ᾱ_{t-1} x_0/(1-ᾱ_{t-1})).
TEST(Posterior, EqualsTheProductOfGaussians) {
  const int64_t T = 1000;
  const ddpm::GaussianDiffusion diffusion = linear_diffusion(T);
  const std::vector<double> betas = reference_linear_betas(T);
  torch::manual_seed(11);
  const torch::Tensor x0 = torch::rand({8}, kF64) * 2 - 1;
  const torch::Tensor x_t = torch::randn({8}, kF64);
  const std::vector<int64_t> indices = {1, 3, 50, 250, 700, 999, 17, 400};
  const torch::Tensor t = torch::tensor(indices, torch::kLong);
  const ddpm::DiagonalGaussian post = diffusion.q_posterior(x0, x_t, t);
  for (size_t k = 0; k < indices.size(); ++k) {
    const int64_t i = indices[k];
    const double beta = betas[static_cast<size_t>(i)], alpha = 1 - beta;
    const double ac_prev = alpha_bar(betas, i - 1);
    const double precision = alpha / beta + 1 / (1 - ac_prev);
    const double variance = 1 / precision;
    const double mean = variance * (std::sqrt(alpha) * value(x_t, k) / beta + std::sqrt(ac_prev) * value(x0, k) / (1 - ac_prev));
    EXPECT_NEAR(value(post.variance, k), variance, 1e-12 * variance) << i;
    EXPECT_NEAR(value(post.mean, k), mean, 1e-10) << i;
  }
}

TEST(ForwardProcess, QSampleHasTheMarginalOfEquationFour) {
  const ddpm::GaussianDiffusion diffusion = linear_diffusion(1000);
  torch::manual_seed(5);
  const int64_t n = 400000;
  const torch::Tensor x0 = torch::full({n}, 0.7, kF64);
  const torch::Tensor t = torch::full({n}, 299, torch::kLong);
  const torch::Tensor x_t = diffusion.q_sample(x0, t, torch::randn({n}, kF64));
  const double ac = alpha_bar(reference_linear_betas(1000), 299);
  EXPECT_NEAR(x_t.mean().item<double>(), std::sqrt(ac) * 0.7, 5 * std::sqrt((1 - ac) / n));
  EXPECT_NEAR(x_t.var().item<double>(), 1 - ac, 0.01);
  const ddpm::DiagonalGaussian q = diffusion.q_mean_variance(x0.slice(0, 0, 1), t.slice(0, 0, 1));
  EXPECT_NEAR(q.mean.item<double>(), std::sqrt(ac) * 0.7, 1e-12);
  EXPECT_NEAR(q.log_variance.item<double>(), std::log(1 - ac), 1e-12);
}

TEST(ForwardProcess, TablesAreGatheredInFloat64ThenCast) {
  const ddpm::GaussianDiffusion diffusion = linear_diffusion(1000);
  const torch::Tensor x32 = torch::ones({2, 1, 2, 2});
  const torch::Tensor gathered = ddpm::GaussianDiffusion::extract(diffusion.alphas_cumprod(), torch::tensor({0, 999}), x32);
  EXPECT_EQ(gathered.scalar_type(), torch::kFloat32);
  EXPECT_EQ(gathered.sizes(), torch::IntArrayRef({2, 1, 1, 1}));
  EXPECT_EQ(gathered[1].item<float>(), static_cast<float>(value(diffusion.alphas_cumprod(), 999)));
}

// With the true ε the model recovers x_0 exactly, so its mean is the posterior mean: the KL is 0 with
// fixed_small and ½(log(σ²/β̃) + β̃/σ² - 1)/ln 2 per dimension with fixed_large. A wrong coefficient or an
// index shifted by one makes these nonzero or different.
TEST(Bound, OracleEpsGivesClosedFormTerms) {
  const int64_t T = 1000;
  for (const ddpm::ModelVariance variance : {ddpm::ModelVariance::kFixedSmall, ddpm::ModelVariance::kFixedLarge}) {
    const ddpm::GaussianDiffusion diffusion = linear_diffusion(T, variance);
    torch::manual_seed(13);
    const torch::Tensor x0 = torch::rand({5, 3, 4, 4}, kF64) * 2 - 1;
    const torch::Tensor noise = torch::randn_like(x0);
    const torch::Tensor t = torch::tensor({1, 2, 100, 500, 999}, torch::kLong);
    const torch::Tensor x_t = diffusion.q_sample(x0, t, noise);
    const ddpm::ReverseStep p = diffusion.p_mean_variance(noise, x_t, t, /*clip_denoised=*/false);
    EXPECT_LT((p.pred_x0 - x0).abs().max().item<double>(), 1e-9);
    const torch::Tensor vb = diffusion.vb_terms_bpd(noise, x0, x_t, t, /*clip_denoised=*/false);
    for (int64_t k = 0; k < 5; ++k) {
      const int64_t i = t[k].item<int64_t>();
      const double post_var = value(diffusion.posterior_variance(), i);
      const double model_var = value(diffusion.model_variance_table(), i);
      const double expected = 0.5 * (std::log(model_var / post_var) + post_var / model_var - 1) / std::log(2.0);
      EXPECT_NEAR(value(vb, k), expected, 1e-9) << ddpm::to_string(variance) << " index " << i;
    }
  }
}

TEST(Bound, DecoderTermAtStepOneIsTheDiscretizedLikelihood) {
  const ddpm::GaussianDiffusion diffusion = linear_diffusion(1000, ddpm::ModelVariance::kFixedLarge);
  torch::manual_seed(17);
  const torch::Tensor x0 = (torch::randint(0, 256, {3, 1, 4, 4}, kF64) / 127.5) - 1;
  const torch::Tensor noise = torch::randn_like(x0);
  const torch::Tensor t = torch::zeros({3}, torch::kLong);
  const torch::Tensor x_t = diffusion.q_sample(x0, t, noise);
  const torch::Tensor eps = noise + 0.3 * torch::randn_like(x0);
  const torch::Tensor vb = diffusion.vb_terms_bpd(eps, x0, x_t, t, /*clip_denoised=*/true);
  const ddpm::ReverseStep p = diffusion.p_mean_variance(eps, x_t, t, /*clip_denoised=*/true);
  // At step 1 the posterior mean of a clipped x̂_0 is x̂_0 itself (coef1 = 1, coef2 = 0).
  EXPECT_LT((p.mean - p.pred_x0).abs().max().item<double>(), 1e-12);
  // Decoder standard deviation at step 1: √β̃_2 (the reference codes' fixed_large convention).
  const double log_scale = 0.5 * std::log(value(diffusion.posterior_variance(), 1));
  const torch::Tensor expected =
      -ddpm::mean_flat(ddpm::discretized_gaussian_log_likelihood(x0, p.mean, torch::full_like(x0, log_scale))) / std::log(2.0);
  EXPECT_LT((vb - expected).abs().max().item<double>(), 1e-12);
  EXPECT_TRUE(torch::isfinite(vb).all().item<bool>());
  EXPECT_GT(vb.min().item<double>(), 0.0);
}

// L_T for data in [-1, 1] on the paper's schedule is about 1e-5 bits/dim; the test's own closed form
// ½(ᾱx² - log(1-ᾱ) - ᾱ)/ln 2 pins it per example.
TEST(Bound, PriorTermIsAboutOneEMinusFiveBitsPerDim) {
  const ddpm::GaussianDiffusion diffusion = linear_diffusion(1000);
  torch::manual_seed(19);
  const torch::Tensor x0 = torch::rand({16, 3, 8, 8}, kF64) * 2 - 1;
  const torch::Tensor prior = diffusion.prior_bpd(x0);
  const double ac = alpha_bar(reference_linear_betas(1000), 999);
  const torch::Tensor expected = 0.5 * (ac * x0.pow(2).flatten(1).mean(1) - std::log(1 - ac) - ac) / std::log(2.0);
  EXPECT_LT((prior - expected).abs().max().item<double>(), 1e-15);
  EXPECT_GT(prior.mean().item<double>(), 5e-6);
  EXPECT_LT(prior.mean().item<double>(), 2e-5);
}

TEST(Bound, BpdLoopReportsEveryTermAndSumsThem) {
  const int64_t T = 25;
  const ddpm::GaussianDiffusion diffusion = linear_diffusion(T);
  const torch::Tensor x0 = (torch::randint(0, 256, {4, 1, 6, 6}, kF64) / 127.5) - 1;
  std::vector<int64_t> seen;
  const ddpm::ModelFn zero_model = [&](const torch::Tensor& x_t, const torch::Tensor& t) {
    seen.push_back(t[0].item<int64_t>());
    return torch::zeros_like(x_t);
  };
  const ddpm::BoundTerms terms =
      diffusion.calc_bpd_loop(zero_model, x0, /*clip_denoised=*/true, at::make_generator<at::CPUGeneratorImpl>(3));
  ASSERT_EQ(seen.size(), static_cast<size_t>(T));
  EXPECT_EQ(seen.front(), T - 1);
  EXPECT_EQ(seen.back(), 0);
  EXPECT_EQ(terms.vb.sizes(), torch::IntArrayRef({4, T}));
  EXPECT_LT((terms.total_bpd - terms.vb.sum(1) - terms.prior_bpd).abs().max().item<double>(), 1e-12);
  EXPECT_TRUE(torch::isfinite(terms.vb).all().item<bool>());
  EXPECT_GE(terms.vb.min().item<double>(), 0.0);
  // A model that predicts ε = 0 has ε-MSE ≈ E[ε²] = 1 at every step.
  EXPECT_NEAR(terms.mse.mean().item<double>(), 1.0, 0.1);
  // Same generator seed, same terms: the loop is deterministic given its noise.
  const ddpm::BoundTerms again =
      diffusion.calc_bpd_loop(zero_model, x0, true, at::make_generator<at::CPUGeneratorImpl>(3));
  EXPECT_TRUE(torch::equal(terms.vb, again.vb));
}

TEST(Sampling, AncestralStepAddsNoNoiseAtStepOne) {
  const ddpm::GaussianDiffusion diffusion = linear_diffusion(1000, ddpm::ModelVariance::kFixedSmall);
  const torch::Tensor x_t = torch::randn({2, 1, 3, 3}, kF64);
  const torch::Tensor eps = torch::randn_like(x_t);
  const torch::Tensor noise = torch::randn_like(x_t);
  const torch::Tensor t = torch::tensor({0, 500}, torch::kLong);
  const torch::Tensor x_prev = diffusion.p_sample(eps, x_t, t, noise, /*clip_denoised=*/false);
  const ddpm::ReverseStep p = diffusion.p_mean_variance(eps, x_t, t, false);
  EXPECT_TRUE(torch::allclose(x_prev[0], p.mean[0]));
  const double sigma = std::sqrt(value(diffusion.posterior_variance(), 500));
  EXPECT_TRUE(torch::allclose(x_prev[1], p.mean[1] + sigma * noise[1], 1e-12, 1e-12));
}

TEST(Loss, SimpleLossIsMeanSquaredEpsError) {
  const torch::Tensor noise = torch::tensor({{1.0, -1.0}, {2.0, 0.0}}, kF64);
  const torch::Tensor pred = torch::tensor({{0.0, 0.0}, {1.0, 1.0}}, kF64);
  const torch::Tensor loss = ddpm::GaussianDiffusion::simple_loss(pred, noise);
  EXPECT_DOUBLE_EQ(loss[0].item<double>(), 1.0);
  EXPECT_DOUBLE_EQ(loss[1].item<double>(), 1.0);
}

}  // namespace
