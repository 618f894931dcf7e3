// The importance sampler of t (timestep_sampler.h) against improved-diffusion's LossSecondMomentResampler, written
// here as its loop (resample.py: update_with_all_losses, weights, sample): the history after any sequence of
// updates, the probabilities and weights on a known history, and the inverse-CDF draws.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <deque>
#include <limits>
#include <random>
#include <vector>

#include "trainer/diffusion/timestep_sampler.h"

namespace {

using ddpm::LossSecondMomentSampler;
constexpr int64_t kHistory = LossSecondMomentSampler::kHistory;

// resample.py's history: per t the last 10 losses, oldest first (a full row shifts left, one at a time).
struct ReferenceHistory {
  explicit ReferenceHistory(int64_t T) : rows(static_cast<size_t>(T)) {}
  void add(int64_t t, double loss) {
    std::deque<double>& row = rows[static_cast<size_t>(t)];
    if (static_cast<int64_t>(row.size()) == kHistory) row.pop_front();
    row.push_back(loss);
  }
  bool warm() const {
    for (const auto& row : rows) {
      if (static_cast<int64_t>(row.size()) != kHistory) return false;
    }
    return true;
  }
  // weights(): uniform until warm, then √mean(L²) normalized, times 1 − 0.001, plus 0.001 / T.
  std::vector<double> probabilities() const {
    const double T = static_cast<double>(rows.size());
    std::vector<double> p(rows.size(), 1.0 / T);
    if (!warm()) return p;
    double total = 0;
    for (size_t t = 0; t < rows.size(); ++t) {
      double second = 0;
      for (const double l : rows[t]) second += l * l;
      p[t] = std::sqrt(second / kHistory);
      total += p[t];
    }
    for (double& x : p) x = x / total * (1 - 0.001) + 0.001 / T;
    return p;
  }
  std::vector<std::deque<double>> rows;
};

void expect_same_state(const LossSecondMomentSampler& sampler, const ReferenceHistory& reference) {
  const torch::Tensor history = sampler.history().cpu(), counts = sampler.counts().cpu();
  for (int64_t t = 0; t < sampler.num_timesteps(); ++t) {
    const std::deque<double>& row = reference.rows[static_cast<size_t>(t)];
    ASSERT_EQ(counts[t].item<int64_t>(), static_cast<int64_t>(row.size())) << "t " << t;
    for (size_t k = 0; k < row.size(); ++k) {
      ASSERT_EQ(history[t][static_cast<int64_t>(k)].item<double>(), row[k]) << "t " << t << " slot " << k;
    }
  }
}

TEST(TimestepSampler, HistoryFollowsTheReferenceLoopThroughAnySequenceOfUpdates) {
  const int64_t T = 7;
  LossSecondMomentSampler sampler(T, torch::kCPU);
  ReferenceHistory reference(T);
  std::mt19937_64 rng(3);
  // Batches of every size, from empty to far more entries of one t than the history holds.
  for (const int64_t size : {0, 1, 5, 3, 40, 2, 13, 100, 7}) {
    std::vector<int64_t> ts;
    std::vector<double> losses;
    for (int64_t j = 0; j < size; ++j) {
      ts.push_back(size == 40 ? 2 : static_cast<int64_t>(rng() % T));  // one batch all on t = 2
      losses.push_back(std::uniform_real_distribution<double>(0.0, 5.0)(rng));
      reference.add(ts.back(), losses.back());
    }
    sampler.update(torch::tensor(ts, torch::kLong), torch::tensor(losses, torch::kFloat64));
    expect_same_state(sampler, reference);
  }
  EXPECT_EQ(sampler.warm().item<bool>(), reference.warm());
}

TEST(TimestepSampler, PaddingEntriesAndSkippedStepsLeaveTheStateAlone) {
  const int64_t T = 4;
  LossSecondMomentSampler sampler(T, torch::kCPU);
  ReferenceHistory reference(T);
  sampler.update(torch::tensor({0, 3, 4, 1}, torch::kLong), torch::tensor({1.0, 2.0, 99.0, 3.0}, torch::kFloat64));
  for (const auto& [t, l] : std::vector<std::pair<int64_t, double>>{{0, 1.0}, {3, 2.0}, {1, 3.0}}) reference.add(t, l);
  expect_same_state(sampler, reference);  // t = 4 = T is padding
  const torch::Tensor before = sampler.history().clone();
  sampler.update(torch::tensor({0, 1}, torch::kLong), torch::tensor({5.0, std::numeric_limits<double>::quiet_NaN()}, torch::kFloat64), torch::tensor(true));
  EXPECT_TRUE(torch::equal(sampler.history(), before));
  expect_same_state(sampler, reference);
}

TEST(TimestepSampler, ProbabilitiesAndWeightsOnAKnownHistory) {
  const int64_t T = 4;
  LossSecondMomentSampler sampler(T, torch::kCPU);
  // Until every t holds 10 losses: uniform, and the draw is the uniform sampler's own with weight 1.
  sampler.update(torch::tensor({0, 1, 2}, torch::kLong), torch::tensor({1.0, 1.0, 1.0}, torch::kFloat64));
  EXPECT_FALSE(sampler.warm().item<bool>());
  EXPECT_TRUE(torch::equal(sampler.probabilities(), torch::full({T}, 0.25, torch::kFloat64)));
  const torch::Tensor u = torch::tensor({0.0, 0.3, 0.99}, torch::kFloat64);
  const torch::Tensor uniform_t = torch::tensor({0, 1, 3}, torch::kLong);
  LossSecondMomentSampler::Draw cold = sampler.draw(u, uniform_t);
  EXPECT_TRUE(torch::equal(cold.t, uniform_t));
  EXPECT_TRUE(torch::equal(cold.weights, torch::ones({3}, torch::kFloat64)));
  // A known full history: t's losses all equal to c_t, so √E[L²] = c_t, except t = 3 alternating 1 and 3 (√5).
  LossSecondMomentSampler known(T, torch::kCPU);
  const std::vector<double> c = {1.0, 2.0, 4.0};
  std::vector<int64_t> ts;
  std::vector<double> losses;
  for (int64_t k = 0; k < kHistory; ++k) {
    for (int64_t t = 0; t < 3; ++t) {
      ts.push_back(t);
      losses.push_back(c[static_cast<size_t>(t)]);
    }
    ts.push_back(3);
    losses.push_back(k % 2 == 0 ? 1.0 : 3.0);
  }
  known.update(torch::tensor(ts, torch::kLong), torch::tensor(losses, torch::kFloat64));
  ASSERT_TRUE(known.warm().item<bool>());
  const double total = 1.0 + 2.0 + 4.0 + std::sqrt(5.0);
  const std::vector<double> root = {1.0, 2.0, 4.0, std::sqrt(5.0)};
  const torch::Tensor p = known.probabilities();
  double cdf = 0;
  std::vector<double> bounds;
  for (int64_t t = 0; t < T; ++t) {
    const double expected = root[static_cast<size_t>(t)] / total * 0.999 + 0.001 / 4;
    EXPECT_NEAR(p[t].item<double>(), expected, 1e-15) << t;
    cdf += expected;
    bounds.push_back(cdf);
  }
  EXPECT_NEAR(p.sum().item<double>(), 1.0, 1e-15);
  // Inverse CDF: u just below F(t) lands on t, just above on t + 1; each weight is 1 / (T p_t).
  std::vector<double> us;
  std::vector<int64_t> expected_t;
  for (int64_t t = 0; t + 1 < T; ++t) {
    us.insert(us.end(), {bounds[static_cast<size_t>(t)] - 1e-9, bounds[static_cast<size_t>(t)] + 1e-9});
    expected_t.insert(expected_t.end(), {t, t + 1});
  }
  us.push_back(0.999999999);
  expected_t.push_back(T - 1);
  const LossSecondMomentSampler::Draw drawn = known.draw(torch::tensor(us, torch::kFloat64),
                                                                 torch::zeros({static_cast<int64_t>(us.size())}, torch::kLong));
  EXPECT_TRUE(torch::equal(drawn.t, torch::tensor(expected_t, torch::kLong))) << drawn.t;
  for (int64_t j = 0; j < drawn.t.size(0); ++j) {
    const int64_t t = drawn.t[j].item<int64_t>();
    EXPECT_NEAR(drawn.weights[j].item<double>(), 1.0 / (4.0 * p[t].item<double>()), 1e-14);
  }
  // Weighted by 1/(T p_t), the draws estimate the uniform mean: Σ_t p_t · w_t · L_t = mean_t L_t exactly.
  double weighted = 0, plain = 0;
  for (int64_t t = 0; t < T; ++t) {
    weighted += p[t].item<double>() * (1.0 / (4.0 * p[t].item<double>())) * root[static_cast<size_t>(t)];
    plain += root[static_cast<size_t>(t)] / 4.0;
  }
  EXPECT_NEAR(weighted, plain, 1e-14);
}

TEST(TimestepSampler, DrawsFollowTheProbabilities) {
  const int64_t T = 5;
  LossSecondMomentSampler sampler(T, torch::kCPU);
  std::vector<int64_t> ts;
  std::vector<double> losses;
  for (int64_t k = 0; k < kHistory; ++k) {
    for (int64_t t = 0; t < T; ++t) {
      ts.push_back(t);
      losses.push_back(static_cast<double>(t * t + 1));
    }
  }
  sampler.update(torch::tensor(ts, torch::kLong), torch::tensor(losses, torch::kFloat64));
  const int64_t n = 200000;
  const torch::Tensor u = (torch::arange(n, torch::kFloat64) + 0.5) / static_cast<double>(n);  // a uniform grid
  const torch::Tensor t = sampler.draw(u, torch::zeros({n}, torch::kLong)).t;
  const torch::Tensor frequency = torch::bincount(t, {}, T).to(torch::kFloat64) / static_cast<double>(n);
  EXPECT_TRUE(torch::allclose(frequency, sampler.probabilities(), 0, 1e-5)) << frequency << sampler.probabilities();
}

}  // namespace
