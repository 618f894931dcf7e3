// The training draws t and ε as a function of (seed, step, index): bit-exact SplitMix64 on tensors, the same
// draw for an image whatever batch it is in, and the right distributions.
#include <gtest/gtest.h>

#include <limits>

#include "data/splitmix64.h"
#include "trainer/diffusion/keyed_noise.h"

namespace {

TEST(KeyedNoise, TensorSplitMixEqualsTheScalarDefinition) {
  ddpm::SplitMix64 rng(42);
  std::vector<int64_t> inputs;
  for (int i = 0; i < 4096; ++i) inputs.push_back(static_cast<int64_t>(rng.next()));
  inputs.push_back(0);
  inputs.push_back(-1);
  inputs.push_back(std::numeric_limits<int64_t>::min());
  const torch::Tensor mixed = ddpm::splitmix64_mix(torch::tensor(inputs, torch::kLong));
  for (size_t i = 0; i < inputs.size(); ++i) {
    ASSERT_EQ(static_cast<uint64_t>(mixed[static_cast<int64_t>(i)].item<int64_t>()),
              ddpm::splitmix64_mix(static_cast<uint64_t>(inputs[i])))
        << "input " << inputs[i];
  }
}

TEST(KeyedNoise, AnImageDrawsTheSameWhateverItsBatch) {
  const torch::Tensor batch_a = torch::tensor({5, 17, 3, 99}, torch::kLong);
  const torch::Tensor batch_b = torch::tensor({99, 3, 1000, 5, 2, 17}, torch::kLong);
  const ddpm::KeyedDraws a = ddpm::keyed_timesteps_and_noise(1234, 7, batch_a, {1, 4, 4}, 1000, torch::kFloat32);
  const ddpm::KeyedDraws b = ddpm::keyed_timesteps_and_noise(1234, 7, batch_b, {1, 4, 4}, 1000, torch::kFloat32);
  const std::vector<std::pair<int64_t, int64_t>> same = {{0, 3}, {1, 5}, {2, 1}, {3, 0}};
  for (const auto& [i, j] : same) {
    EXPECT_EQ(a.t[i].item<int64_t>(), b.t[j].item<int64_t>());
    EXPECT_TRUE(torch::equal(a.noise[i], b.noise[j]));
  }
  // Another step or seed: other draws.
  const ddpm::KeyedDraws next = ddpm::keyed_timesteps_and_noise(1234, 8, batch_a, {1, 4, 4}, 1000, torch::kFloat32);
  const ddpm::KeyedDraws other = ddpm::keyed_timesteps_and_noise(1235, 7, batch_a, {1, 4, 4}, 1000, torch::kFloat32);
  EXPECT_FALSE(torch::equal(a.noise, next.noise));
  EXPECT_FALSE(torch::equal(a.noise, other.noise));
}

// hash_combine with its second argument on the device (the keys of a captured training or sampling step).
TEST(KeyedNoise, DeviceHashCombineEqualsTheScalarDefinition) {
  ddpm::SplitMix64 rng(9);
  for (int i = 0; i < 200; ++i) {
    const uint64_t a = rng.next(), b = i < 100 ? static_cast<uint64_t>(i) : rng.next();
    for (const ddpm::KeyedCompute compute : {ddpm::KeyedCompute::kAuto, ddpm::KeyedCompute::kTensorOps}) {
      const torch::Tensor on_device =
          ddpm::hash_combine_on_device(a, torch::tensor(static_cast<int64_t>(b), torch::kLong), compute);
      ASSERT_EQ(on_device.dim(), 0);
      ASSERT_EQ(static_cast<uint64_t>(on_device.item<int64_t>()), ddpm::hash_combine(a, b)) << a << " " << b;
    }
  }
}

// The step may come as a device tensor (a captured CUDA graph reads it there): the key must still be
// hash_combine(seed, step) of data/splitmix64.h bit for bit, so the draws equal the host-step ones.
TEST(KeyedNoise, AStepTensorDrawsWhatTheHostStepDraws) {
  const torch::Tensor indices = torch::tensor({0, 5, 17, 59999}, torch::kLong);
  const std::vector<int64_t> steps = {0, 1, 7, 123456789, (int64_t{1} << 62) + 5, std::numeric_limits<int64_t>::max()};
  for (const int64_t step : steps) {
    const ddpm::KeyedDraws host = ddpm::keyed_timesteps_and_noise(1234, step, indices, {3, 4, 4}, 1000, torch::kFloat32);
    const ddpm::KeyedDraws device =
        ddpm::keyed_timesteps_and_noise(1234, torch::tensor(step, torch::kLong), indices, {3, 4, 4}, 1000, torch::kFloat32);
    EXPECT_TRUE(torch::equal(host.t, device.t)) << "step " << step;
    EXPECT_TRUE(torch::equal(host.noise, device.noise)) << "step " << step;
    const torch::Tensor reference =
        ddpm::keyed_normal(ddpm::hash_combine(1234, static_cast<uint64_t>(step)), indices, {3, 4, 4}, torch::kFloat32);
    EXPECT_TRUE(torch::equal(device.noise, reference)) << "step " << step;
  }
}

// On the CPU the draws come from a loop over plain integers; elsewhere from tensor operations. Both forms, run
// here on the CPU, give the same bits: for keys and indices across the 64-bit range, several shapes and dtypes.
TEST(KeyedNoise, TheHostLoopDrawsWhatTheTensorOperationsDraw) {
  const torch::Tensor indices =
      torch::tensor(std::vector<int64_t>{0, 1, 5, 17, 59999, std::numeric_limits<int64_t>::max(), -3}, torch::kLong);
  ddpm::SplitMix64 rng(5);
  for (int k = 0; k < 6; ++k) {
    const uint64_t key = k == 0 ? 0 : k == 1 ? ~0ULL : rng.next();
    const torch::Tensor key_tensor = torch::tensor(static_cast<int64_t>(key), torch::kLong);
    for (const std::vector<int64_t>& shape : {std::vector<int64_t>{1, 28, 28}, std::vector<int64_t>{3, 4, 5}}) {
      for (const torch::ScalarType dtype : {torch::kFloat32, torch::kFloat64}) {
        const torch::Tensor host = ddpm::keyed_normal(key_tensor, indices, shape, dtype);
        const torch::Tensor ops = ddpm::keyed_normal(key_tensor, indices, shape, dtype, ddpm::KeyedCompute::kTensorOps);
        ASSERT_TRUE(torch::equal(host, ops)) << "key " << key << " dtype " << dtype;
      }
    }
  }
  std::vector<int64_t> values;
  for (int i = 0; i < 300; ++i) values.push_back(i < 100 ? i : static_cast<int64_t>(rng.next()));
  const torch::Tensor b = torch::tensor(values, torch::kLong);
  const torch::Tensor host = ddpm::hash_combine_on_device(77, b);
  EXPECT_TRUE(torch::equal(host, ddpm::hash_combine_on_device(77, b, ddpm::KeyedCompute::kTensorOps)));
  for (size_t i = 0; i < values.size(); ++i) {
    ASSERT_EQ(static_cast<uint64_t>(host[static_cast<int64_t>(i)].item<int64_t>()),
              ddpm::hash_combine(77, static_cast<uint64_t>(values[i])));
  }
}

TEST(KeyedNoise, NoiseIsStandardNormalAndTimestepsUniform) {
  const torch::Tensor indices = torch::arange(20000, torch::kLong);
  const ddpm::KeyedDraws d = ddpm::keyed_timesteps_and_noise(99, 3, indices, {3, 8, 8}, 10, torch::kFloat32);
  const torch::Tensor n = d.noise.to(torch::kFloat64).flatten();  // 3.84M samples
  EXPECT_NEAR(n.mean().item<double>(), 0.0, 3e-3);
  EXPECT_NEAR(n.std().item<double>(), 1.0, 3e-3);
  EXPECT_NEAR((n.abs() > 1.959964).to(torch::kFloat64).mean().item<double>(), 0.05, 1e-3);  // two-sided 5%
  EXPECT_NEAR((n > 0).to(torch::kFloat64).mean().item<double>(), 0.5, 1e-3);
  // Neighbouring elements and neighbouring images are uncorrelated.
  const torch::Tensor flat = d.noise.to(torch::kFloat64).reshape({20000, -1});
  EXPECT_NEAR((flat.select(1, 0) * flat.select(1, 1)).mean().item<double>(), 0.0, 0.03);
  EXPECT_NEAR((flat.slice(0, 0, 19999) * flat.slice(0, 1, 20000)).mean().item<double>(), 0.0, 3e-3);
  // t: each of the 10 values about 2000 times (a binomial sd of 42), in range.
  EXPECT_EQ(d.t.min().item<int64_t>(), 0);
  EXPECT_EQ(d.t.max().item<int64_t>(), 9);
  const torch::Tensor counts = torch::bincount(d.t, {}, 10);
  for (int64_t k = 0; k < 10; ++k) EXPECT_NEAR(counts[k].item<int64_t>(), 2000, 200) << "t = " << k;
}

}  // namespace
