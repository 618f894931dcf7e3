// ActivationStatistics under mpirun: each rank adds its shard (images r, r + W, ...) in uneven batches, and the
// reduced statistics equal one process's over all the activations, for 1, 2 and 3 ranks (run as np1, np2, np3),
// within 1e-12 relative; and they keep their digits where Σxxᵀ − nμμᵀ would cancel (a mean 1e4 against a spread 1).
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <string>

#include "tests/mpi_main.h"
#include "trainer/fid/activation_statistics.h"

namespace {

// The same data on every rank: [n, d], mean `offset` per dimension, correlated dimensions.
torch::Tensor activations(int64_t n, int64_t d, double offset) {
  torch::Generator gen = at::make_generator<at::CPUGeneratorImpl>(1234);
  const torch::Tensor mix = torch::randn({d, d}, gen, torch::kFloat64);
  return torch::matmul(torch::randn({n, d}, gen, torch::kFloat64), mix) + offset +
         torch::linspace(0, 3, d, torch::kFloat64);
}

// Two-pass float64 reference: the mean, then the centered products (numpy.cov, ddof 1).
std::pair<torch::Tensor, torch::Tensor> two_pass(const torch::Tensor& x) {
  const torch::Tensor mean = x.mean(0);
  const torch::Tensor c = x - mean;
  return {mean, torch::matmul(c.t(), c) / static_cast<double>(x.size(0) - 1)};
}

double relative_difference(const torch::Tensor& a, const torch::Tensor& b) {
  return (a - b).abs().max().item<double>() / b.abs().max().item<double>();
}

// This rank's shard fed in batches of `batch` (an empty batch included), reduced over all ranks.
ddpm::FidStatistics sharded(const torch::Tensor& x, int64_t batch, const ddpm::MpiContext& mpi) {
  const torch::Tensor mine = x.slice(0, mpi.rank(), x.size(0), mpi.world_size());
  ddpm::ActivationStatistics statistics;
  statistics.add(mine.slice(0, 0, 0));
  for (int64_t start = 0; start < mine.size(0); start += batch) {
    statistics.add(mine.slice(0, start, std::min(mine.size(0), start + batch)).to(torch::kFloat32).to(torch::kFloat64));
  }
  statistics.reduce(mpi);
  return statistics.statistics("sharded");
}

TEST(ActivationStatisticsMpi, ShardedEqualsOneProcessOverEverything) {
  const ddpm::MpiContext& mpi = ddpm_test::mpi();
  // Rounded through float32 once (as network activations are), so that each rank sees exactly the same values.
  const torch::Tensor x = activations(103, 9, 0.0).to(torch::kFloat32).to(torch::kFloat64);
  ddpm::ActivationStatistics whole;
  whole.add(x);
  const ddpm::FidStatistics one = whole.statistics("one");
  const ddpm::FidStatistics all = sharded(x, 7, mpi);
  EXPECT_EQ(all.count, 103);
  EXPECT_LT(relative_difference(all.mu, one.mu), 1e-12);
  EXPECT_LT(relative_difference(all.sigma, one.sigma), 1e-12);
  const auto [mean, cov] = two_pass(x);
  EXPECT_LT(relative_difference(all.mu, mean), 1e-12);
  EXPECT_LT(relative_difference(all.sigma, cov), 1e-12);
  EXPECT_TRUE(torch::equal(all.sigma, all.sigma.t()));
  EXPECT_EQ(all.mu.scalar_type(), torch::kFloat64);
  EXPECT_EQ(all.sigma.device(), torch::Device(torch::kCPU));
}

TEST(ActivationStatisticsMpi, KeepsItsDigitsUnderALargeMean) {
  const ddpm::MpiContext& mpi = ddpm_test::mpi();
  // Mean 1e4, spread ~3: Σxxᵀ is ~1e8·n per entry, the covariance ~10, so the one-pass formula without a shift
  // would keep only about 16 − 8 = 8 digits. The shifted sums keep the reference's to 1e-12.
  const torch::Tensor x = activations(211, 6, 1e4).to(torch::kFloat32).to(torch::kFloat64);
  const ddpm::FidStatistics all = sharded(x, 16, mpi);
  const auto [mean, cov] = two_pass(x);
  EXPECT_LT(relative_difference(all.mu, mean), 1e-14);
  EXPECT_LT(relative_difference(all.sigma, cov), 1e-12);
  const torch::Tensor naive =
      (torch::matmul(x.t(), x) - static_cast<double>(x.size(0)) * torch::outer(mean, mean)) / (x.size(0) - 1.0);
  EXPECT_GT(relative_difference(naive, cov), 1e-11) << "the data does not exercise the cancellation";
}

TEST(ActivationStatisticsMpi, RanksWithoutActivationsTakePart) {
  const ddpm::MpiContext& mpi = ddpm_test::mpi();
  // Two activations: with 3 ranks, rank 2 has none and learns D from the others.
  const torch::Tensor x = torch::tensor({{1.0, 2.0, 3.0}, {3.0, 6.0, 0.0}}, torch::kFloat64);
  const ddpm::FidStatistics all = sharded(x, 1, mpi);
  EXPECT_EQ(all.count, 2);
  EXPECT_TRUE(torch::allclose(all.mu, torch::tensor({2.0, 4.0, 1.5}, torch::kFloat64), 0, 1e-15));
  const torch::Tensor d = torch::tensor({1.0, 2.0, -1.5}, torch::kFloat64);  // x_i − mean = ±d
  EXPECT_TRUE(torch::allclose(all.sigma, 2.0 * torch::outer(d, d), 0, 1e-14));
}

TEST(ActivationStatisticsMpi, FewerThanTwoActivationsAreAnError) {
  const ddpm::MpiContext& mpi = ddpm_test::mpi();
  ddpm::ActivationStatistics statistics;
  if (mpi.rank() == 0) statistics.add(torch::ones({1, 4}));
  statistics.reduce(mpi);
  EXPECT_EQ(statistics.count(), 1);
  EXPECT_EQ(statistics.dimension(), 4);
  try {
    statistics.statistics("one.npz");
    ADD_FAILURE() << "no error for one activation";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("one.npz: 1 image(s): the covariance of the activations needs at least 2"),
              std::string::npos)
        << e.what();
  }
  EXPECT_THROW(statistics.add(torch::ones({1, 4})), std::logic_error);
}

TEST(ActivationStatistics, RefusesAChangeOfDimension) {
  ddpm::ActivationStatistics statistics;
  statistics.add(torch::ones({2, 4}));
  EXPECT_THROW(statistics.add(torch::ones({2, 5})), std::runtime_error);
  EXPECT_THROW(statistics.add(torch::ones({8})), std::runtime_error);
}

}  // namespace
