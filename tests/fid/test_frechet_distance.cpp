// frechet_distance against float64 references computed here without an eigendecomposition of the product: a closed
// form for commuting covariances, a Denman–Beavers iteration for general SPD ones, and the nuclear norm of the data
// matrices for rank-deficient ones (D > N samples).
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <string>

#include "trainer/fid/frechet_distance.h"

namespace {

using ddpm::FidStatistics;

torch::Tensor random_orthogonal(int64_t d, torch::Generator& gen) {
  const auto qr = torch::linalg_qr(torch::randn({d, d}, gen, torch::kFloat64));
  return std::get<0>(qr);
}

torch::Tensor random_spd(int64_t d, torch::Generator& gen) {
  const torch::Tensor a = torch::randn({d, d}, gen, torch::kFloat64);
  return torch::matmul(a, a.t()) / static_cast<double>(d) + 0.1 * torch::eye(d, torch::kFloat64);
}

FidStatistics stats(torch::Tensor mu, torch::Tensor sigma, const std::string& source) {
  return FidStatistics{std::move(mu), std::move(sigma), -1, source};
}

// Denman–Beavers: Y → A^{1/2} for A without eigenvalues on the closed negative real axis (Σ1 Σ2 with SPD factors).
double trace_sqrt_denman_beavers(const torch::Tensor& a) {
  torch::Tensor y = a.clone(), z = torch::eye(a.size(0), a.options());
  for (int k = 0; k < 100; ++k) {
    const torch::Tensor y_next = 0.5 * (y + torch::linalg_inv(z));
    z = 0.5 * (z + torch::linalg_inv(y));
    const double change = (y_next - y).abs().max().item<double>();
    y = y_next;
    if (change < 1e-15 * y.abs().max().item<double>()) break;
  }
  return y.trace().item<double>();
}

// (x − mean)ᵀ(x − mean) / (n − 1) and the centered data, as numpy.cov(rowvar=False).
std::pair<torch::Tensor, torch::Tensor> covariance_of(const torch::Tensor& x) {
  const torch::Tensor centered = x - x.mean(0);
  return {torch::matmul(centered.t(), centered) / static_cast<double>(x.size(0) - 1), centered};
}

TEST(FrechetDistance, CommutingCovariancesMatchTheClosedForm) {
  torch::Generator gen = at::make_generator<at::CPUGeneratorImpl>(1);
  const int64_t d = 24;
  const torch::Tensor q = random_orthogonal(d, gen);
  const torch::Tensor a = torch::rand({d}, gen, torch::kFloat64) * 3 + 0.01;
  const torch::Tensor b = torch::rand({d}, gen, torch::kFloat64) * 5 + 0.01;
  const torch::Tensor mu1 = torch::randn({d}, gen, torch::kFloat64), mu2 = torch::randn({d}, gen, torch::kFloat64);
  const auto s1 = stats(mu1, torch::matmul(torch::matmul(q, torch::diag(a)), q.t()), "a.npz");
  const auto s2 = stats(mu2, torch::matmul(torch::matmul(q, torch::diag(b)), q.t()), "b.npz");
  // Tr((Σ1 Σ2)^{1/2}) = Σ √(a_i b_i) for Σ1, Σ2 diagonal in one basis.
  const double expected = (mu1 - mu2).pow(2).sum().item<double>() + a.sum().item<double>() + b.sum().item<double>() -
                          2.0 * (a * b).sqrt().sum().item<double>();
  const double fid = ddpm::frechet_distance(s1, s2);
  EXPECT_NEAR(fid, expected, 1e-10 * std::abs(expected));
  EXPECT_NEAR(ddpm::frechet_distance(s2, s1), expected, 1e-10 * std::abs(expected));  // symmetric
  EXPECT_GT(fid, 0.0);
}

TEST(FrechetDistance, RandomSpdCovariancesMatchDenmanBeavers) {
  torch::Generator gen = at::make_generator<at::CPUGeneratorImpl>(2);
  for (const int64_t d : {2, 7, 32, 64}) {
    const torch::Tensor sigma1 = random_spd(d, gen), sigma2 = 3.0 * random_spd(d, gen);
    const double reference = trace_sqrt_denman_beavers(torch::matmul(sigma1, sigma2));
    EXPECT_NEAR(ddpm::trace_sqrt_product(sigma1, sigma2), reference, 1e-10 * reference) << "D = " << d;
    const torch::Tensor mu1 = torch::randn({d}, gen, torch::kFloat64), mu2 = torch::randn({d}, gen, torch::kFloat64);
    const double expected = (mu1 - mu2).pow(2).sum().item<double>() + sigma1.trace().item<double>() +
                            sigma2.trace().item<double>() - 2.0 * reference;
    // A swapped sign of any term (+2 Tr, −Tr Σ) or a missing mean term misses this by far more than the tolerance.
    EXPECT_NEAR(ddpm::frechet_distance(stats(mu1, sigma1, "a"), stats(mu2, sigma2, "b")), expected,
                1e-9 * std::abs(expected) + 1e-12)
        << "D = " << d;
  }
}

TEST(FrechetDistance, RankDeficientCovariancesMatchTheNuclearNorm) {
  // Fewer samples than dimensions (as 50 images of a 2048-d network would be): both covariances singular, their
  // product too. Tr((Σ1 Σ2)^{1/2}) = ‖X1 X2ᵀ‖_* / √((n − 1)(m − 1)) for the centered data X1 [n, D], X2 [m, D].
  torch::Generator gen = at::make_generator<at::CPUGeneratorImpl>(3);
  for (const auto& [d, n, m] : {std::tuple{40, 10, 12}, std::tuple{200, 30, 17}, std::tuple{64, 64, 8}}) {
    const torch::Tensor x1 = torch::randn({n, d}, gen, torch::kFloat64) * 2 + 1;
    const torch::Tensor x2 = torch::randn({m, d}, gen, torch::kFloat64) + torch::linspace(0, 1, d, torch::kFloat64);
    const auto [sigma1, c1] = covariance_of(x1);
    const auto [sigma2, c2] = covariance_of(x2);
    const double reference = torch::linalg_svdvals(torch::matmul(c1, c2.t())).sum().item<double>() /
                             std::sqrt(static_cast<double>((n - 1) * (m - 1)));
    EXPECT_NEAR(ddpm::trace_sqrt_product(sigma1, sigma2), reference, 1e-9 * reference)
        << "D " << d << ", n " << n << ", m " << m;
    const double expected = (x1.mean(0) - x2.mean(0)).pow(2).sum().item<double>() + sigma1.trace().item<double>() +
                            sigma2.trace().item<double>() - 2.0 * reference;
    EXPECT_NEAR(ddpm::frechet_distance(stats(x1.mean(0), sigma1, "a"), stats(x2.mean(0), sigma2, "b")), expected,
                1e-9 * std::abs(expected));
  }
}

TEST(FrechetDistance, IdenticalStatisticsGiveZero) {
  torch::Generator gen = at::make_generator<at::CPUGeneratorImpl>(4);
  const torch::Tensor x = torch::randn({20, 50}, gen, torch::kFloat64) * 10;  // singular: 20 samples, D = 50
  const auto [sigma, centered] = covariance_of(x);
  const auto s = stats(x.mean(0), sigma, "same.npz");
  EXPECT_NEAR(ddpm::frechet_distance(s, s), 0.0, 1e-10 * sigma.trace().item<double>());
  const torch::Tensor spd = random_spd(30, gen);
  const auto t = stats(torch::randn({30}, gen, torch::kFloat64), spd, "spd.npz");
  EXPECT_NEAR(ddpm::frechet_distance(t, t), 0.0, 1e-10 * spd.trace().item<double>());
}

TEST(FrechetDistance, EqualCovariancesLeaveTheMeanTerm) {
  torch::Generator gen = at::make_generator<at::CPUGeneratorImpl>(5);
  const torch::Tensor sigma = random_spd(16, gen);
  const torch::Tensor mu1 = torch::randn({16}, gen, torch::kFloat64), mu2 = mu1 + 0.5;
  EXPECT_NEAR(ddpm::frechet_distance(stats(mu1, sigma, "a"), stats(mu2, sigma, "b")), 16 * 0.25, 1e-9);
}

void expect_error(const FidStatistics& a, const FidStatistics& b, const std::string& fragment) {
  try {
    ddpm::frechet_distance(a, b);
    ADD_FAILURE() << "no error; expected one with '" << fragment << "'";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos) << e.what();
  }
}

TEST(FrechetDistance, RefusesMalformedStatisticsNamingTheFiles) {
  const auto eye = [](int64_t d) { return torch::eye(d, torch::kFloat64); };
  const auto zeros = [](int64_t d) { return torch::zeros({d}, torch::kFloat64); };
  expect_error(stats(zeros(3), eye(3), "a.npz"), stats(zeros(4), eye(4), "b.npz"),
               "a.npz has D = 3, b.npz has D = 4");
  expect_error(stats(torch::zeros({3, 1}, torch::kFloat64), eye(3), "a.npz"), stats(zeros(3), eye(3), "b.npz"),
               "a.npz: mu must be a vector [D], got [3, 1]");
  expect_error(stats(zeros(3), eye(3), "a.npz"), stats(zeros(3), torch::zeros({3, 2}, torch::kFloat64), "b.npz"),
               "b.npz: sigma must be a square matrix [D, D], got [3, 2]");
  expect_error(stats(zeros(3), eye(3), "a.npz"), stats(zeros(2), eye(3), "b.npz"), "b.npz: mu [2] and sigma [3, 3]");
  torch::Tensor asymmetric = eye(3);
  asymmetric[0][1] = 0.5;
  expect_error(stats(zeros(3), asymmetric, "a.npz"), stats(zeros(3), eye(3), "b.npz"), "a.npz: sigma is not symmetric");
  torch::Tensor nan_sigma = eye(3);
  nan_sigma[1][1] = std::nan("");
  expect_error(stats(zeros(3), eye(3), "a.npz"), stats(zeros(3), nan_sigma, "b.npz"), "b.npz: sigma holds non-finite");
  torch::Tensor inf_mu = zeros(3);
  inf_mu[0] = INFINITY;
  expect_error(stats(inf_mu, eye(3), "a.npz"), stats(zeros(3), eye(3), "b.npz"), "a.npz: mu holds non-finite");
}

TEST(FrechetDistance, AnImaginaryComponentBeyondPytorchFidsToleranceIsAnError) {
  // Σ1 = I, Σ2 indefinite: Σ1 Σ2 has the eigenvalue −4, whose square root sqrtm gives as 2i.
  const auto a = stats(torch::zeros({2}, torch::kFloat64), torch::eye(2, torch::kFloat64), "a.npz");
  const auto b = stats(torch::zeros({2}, torch::kFloat64), torch::diag(torch::tensor({1.0, -4.0}, torch::kFloat64)), "b.npz");
  expect_error(a, b, "imaginary component of 2 (more than 0.001, where pytorch-fid stops too): b.npz's sigma has negative");
  expect_error(b, a, "imaginary component of 2 (more than 0.001, where pytorch-fid stops too): b.npz's sigma has negative");
  // Below the tolerance (an eigenvalue of −1e-8: 1e-4 i) the real part is taken, as pytorch-fid does.
  const auto c = stats(torch::zeros({2}, torch::kFloat64), torch::diag(torch::tensor({1.0, -1e-8}, torch::kFloat64)), "c.npz");
  EXPECT_NEAR(ddpm::frechet_distance(a, c), 2.0 + (1.0 - 1e-8) - 2.0 * 1.0, 1e-12);
  // Both indefinite in the same way: the product is PSD (eigenvalues 1, 4), its root real, and no error.
  const torch::Tensor indefinite = torch::diag(torch::tensor({1.0, -2.0}, torch::kFloat64));
  const auto d = stats(torch::zeros({2}, torch::kFloat64), indefinite, "d.npz");
  EXPECT_NEAR(ddpm::frechet_distance(d, d), 2.0 * (1.0 - 2.0) - 2.0 * (1.0 + 2.0), 1e-12);
}

TEST(FrechetDistance, ANonFiniteSquareRootIsRetriedWithEpsThenRefused) {
  // Entries at the top of the double range: the sum of the singular values overflows, the eps retry cannot help,
  // and the error says so (the eigenvalue form itself never squares an entry, so 1e300 still works).
  const auto a = stats(torch::zeros({20}, torch::kFloat64), torch::eye(20, torch::kFloat64) * 1e307, "a.npz");
  expect_error(a, a, "is not finite, even with 1e-06 added to their diagonals");
  const auto big = stats(torch::zeros({2}, torch::kFloat64), torch::eye(2, torch::kFloat64) * 1e300, "big.npz");
  EXPECT_NEAR(ddpm::frechet_distance(big, big), 0.0, 1e286);
}

}  // namespace
