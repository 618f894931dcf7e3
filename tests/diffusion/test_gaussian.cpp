// The elementwise Gaussian pieces of the bound, against closed forms, sums over the 256 pixel values and a
// Monte Carlo estimate. All in float64 so that tolerances are tight enough to catch a wrong bin width.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>

#include "trainer/diffusion/gaussian.h"

namespace {

const auto kF64 = torch::TensorOptions().dtype(torch::kFloat64);

// The 256 model-range values u/127.5 - 1, written independently of data/pixels.
torch::Tensor pixel_grid() { return torch::arange(256, kF64) / 127.5 - 1.0; }

TEST(NormalKl, IsZeroForIdenticalGaussians) {
  torch::manual_seed(1);
  const torch::Tensor mean = torch::randn({1000}, kF64) * 3.0;
  const torch::Tensor logvar = torch::randn({1000}, kF64);
  EXPECT_LT(ddpm::normal_kl(mean, logvar, mean, logvar).abs().max().item<double>(), 1e-12);
}

TEST(NormalKl, IsNonNegativeAndMatchesClosedForm) {
  torch::manual_seed(2);
  const torch::Tensor m1 = torch::randn({2000}, kF64), m2 = torch::randn({2000}, kF64);
  const torch::Tensor lv1 = torch::randn({2000}, kF64), lv2 = torch::randn({2000}, kF64);
  const torch::Tensor kl = ddpm::normal_kl(m1, lv1, m2, lv2);
  EXPECT_GE(kl.min().item<double>(), 0.0);
  // Scalar closed form: log(σ2/σ1) + (σ1² + (μ1-μ2)²)/(2σ2²) - ½.
  for (int64_t i = 0; i < 50; ++i) {
    const double mu1 = m1[i].item<double>(), mu2 = m2[i].item<double>();
    const double s1 = std::exp(0.5 * lv1[i].item<double>()), s2 = std::exp(0.5 * lv2[i].item<double>());
    const double expected = std::log(s2 / s1) + (s1 * s1 + (mu1 - mu2) * (mu1 - mu2)) / (2 * s2 * s2) - 0.5;
    EXPECT_NEAR(kl[i].item<double>(), expected, 1e-12);
  }
}

TEST(NormalKl, AgreesWithMonteCarlo) {
  const double mu1 = 0.3, lv1 = std::log(0.5), mu2 = -0.4, lv2 = std::log(1.7);
  torch::manual_seed(3);
  const int64_t n = 2000000;
  const torch::Tensor x = mu1 + std::exp(0.5 * lv1) * torch::randn({n}, kF64);
  const auto log_density = [](const torch::Tensor& v, double mu, double lv) {
    return -0.5 * (std::log(2 * M_PI) + lv) - (v - mu).pow(2) / (2 * std::exp(lv));
  };
  const torch::Tensor ratio = log_density(x, mu1, lv1) - log_density(x, mu2, lv2);
  const double estimate = ratio.mean().item<double>();
  const double standard_error = ratio.std().item<double>() / std::sqrt(static_cast<double>(n));
  const double exact = ddpm::normal_kl(torch::tensor(mu1, kF64), torch::tensor(lv1, kF64), torch::tensor(mu2, kF64),
                                       torch::tensor(lv2, kF64))
                           .item<double>();
  EXPECT_NEAR(estimate, exact, 5 * standard_error);
  EXPECT_GT(exact, 0.05);  // far enough from 0 that a sign error in any term is visible
}

TEST(ApproxNormalCdf, IsCloseToTheExactCdfAndMonotone) {
  const torch::Tensor x = torch::linspace(-6, 6, 1201, kF64);
  const torch::Tensor approx = ddpm::approx_standard_normal_cdf(x);
  const torch::Tensor exact = 0.5 * (1 + torch::erf(x / std::sqrt(2.0)));
  EXPECT_LT((approx - exact).abs().max().item<double>(), 5e-4);
  EXPECT_GT((approx.slice(0, 1) - approx.slice(0, 0, -1)).min().item<double>(), 0.0);
  EXPECT_NEAR(ddpm::approx_standard_normal_cdf(torch::tensor(0.0, kF64)).item<double>(), 0.5, 1e-15);
}

// The decoder is a distribution over the 256 pixel values: probabilities sum to 1 for any mean and
// scale, also for means outside [-1, 1]. A bin of the wrong width (or closed edge bins) breaks the sum.
TEST(DiscretizedGaussian, ProbabilitiesOverAllPixelValuesSumToOne) {
  const torch::Tensor x = pixel_grid();
  for (double mean : {-1.7, -1.0, -0.6, 0.0, 0.013, 0.5, 1.0, 1.4}) {
    for (double log_scale : {-7.0, -5.0, -3.0, -1.0, 0.0, 1.0}) {
      const torch::Tensor means = torch::full({256}, mean, kF64);
      const torch::Tensor log_scales = torch::full({256}, log_scale, kF64);
      const torch::Tensor probs = torch::exp(ddpm::discretized_gaussian_log_likelihood(x, means, log_scales));
      EXPECT_NEAR(probs.sum().item<double>(), 1.0, 1e-9) << "mean " << mean << " log_scale " << log_scale;
      EXPECT_GE(probs.min().item<double>(), 0.0);
    }
  }
}

TEST(DiscretizedGaussian, InteriorBinIsCdfDifferenceOverPlusMinusOneOver255) {
  const double mean = 0.1, log_scale = -2.5, sigma = std::exp(log_scale);
  const int u = 140;
  const double x = u / 127.5 - 1.0;
  const auto cdf = [](double z) { return 0.5 * (1 + std::tanh(std::sqrt(2 / M_PI) * (z + 0.044715 * z * z * z))); };
  const double expected = std::log(cdf((x + 1.0 / 255 - mean) / sigma) - cdf((x - 1.0 / 255 - mean) / sigma));
  const double got = ddpm::discretized_gaussian_log_likelihood(torch::tensor({x}, kF64), torch::tensor({mean}, kF64),
                                                               torch::tensor({log_scale}, kF64))
                         .item<double>();
  EXPECT_NEAR(got, expected, 1e-12);
}

TEST(DiscretizedGaussian, EdgeBinsAreOpenAndFiniteAtPlusMinusOne) {
  const torch::Tensor x = torch::tensor({-1.0, 1.0, -1.0, 1.0}, kF64);
  // Means far on the wrong side with tiny scales: the floor keeps the log finite.
  const torch::Tensor means = torch::tensor({3.0, -3.0, -1.0, 1.0}, kF64);
  const torch::Tensor log_scales = torch::full({4}, -8.0, kF64);
  const torch::Tensor ll = ddpm::discretized_gaussian_log_likelihood(x, means, log_scales);
  EXPECT_TRUE(torch::isfinite(ll).all().item<bool>());
  EXPECT_NEAR(ll[0].item<double>(), std::log(1e-12), 1e-9);
  // A mean exactly at the edge puts about all the mass in the open edge bin.
  EXPECT_NEAR(ll[2].item<double>(), 0.0, 1e-9);
  EXPECT_NEAR(ll[3].item<double>(), 0.0, 1e-9);
  // The edge bin extends to infinity: its probability is Φ((-1 + 1/255 - μ)/σ), not a finite bin.
  const double mean = -1.2, sigma = 0.3;
  const auto cdf = [](double z) { return 0.5 * (1 + std::tanh(std::sqrt(2 / M_PI) * (z + 0.044715 * z * z * z))); };
  const double got = ddpm::discretized_gaussian_log_likelihood(torch::tensor({-1.0}, kF64), torch::tensor({mean}, kF64),
                                                               torch::tensor({std::log(sigma)}, kF64))
                         .item<double>();
  EXPECT_NEAR(got, std::log(cdf((-1.0 + 1.0 / 255 - mean) / sigma)), 1e-12);
}

TEST(MeanFlat, AveragesAllButTheBatchDimension) {
  const torch::Tensor t = torch::arange(24, kF64).view({2, 3, 4});
  const torch::Tensor m = ddpm::mean_flat(t);
  ASSERT_EQ(m.sizes(), torch::IntArrayRef({2}));
  EXPECT_DOUBLE_EQ(m[0].item<double>(), 5.5);
  EXPECT_DOUBLE_EQ(m[1].item<double>(), 17.5);
}

}  // namespace
