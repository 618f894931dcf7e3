// Adam against Algorithm 1 of Kingma & Ba computed in float64, in both kernels (fused, per tensor); skipped
// steps leave everything bitwise unchanged; the state round-trips through checkpoint tensors exactly.
#include <gtest/gtest.h>

#include <cmath>

#include "trainer/optim/adam.h"
#include "trainer/tools/profile.h"

namespace {

struct Problem {
  std::vector<torch::Tensor> params;
  std::vector<std::string> names;
};

Problem make_problem() {
  torch::manual_seed(7);
  Problem p;
  p.params = {torch::randn({4, 3, 3, 3}), torch::randn({17}), torch::randn({5, 6})};
  for (torch::Tensor& t : p.params) t.set_requires_grad(true);
  p.names = {"conv.weight", "norm.bias", "proj.weight"};
  return p;
}

void set_grads(const Problem& p, int step) {
  torch::manual_seed(100 + step);
  for (const torch::Tensor& t : p.params) t.mutable_grad() = torch::randn_like(t) * (1.0 + step);
}

// Algorithm 1 in float64, the reference the kernels are held to.
std::vector<torch::Tensor> reference(int steps, double lr) {
  const Problem p = make_problem();
  std::vector<torch::Tensor> theta, m, v;
  for (const torch::Tensor& t : p.params) {
    theta.push_back(t.detach().to(torch::kFloat64));
    m.push_back(torch::zeros_like(theta.back()));
    v.push_back(torch::zeros_like(theta.back()));
  }
  for (int s = 1; s <= steps; ++s) {
    set_grads(p, s);
    for (size_t i = 0; i < theta.size(); ++i) {
      const torch::Tensor g = p.params[i].grad().to(torch::kFloat64);
      m[i] = 0.9 * m[i] + 0.1 * g;
      v[i] = 0.999 * v[i] + 0.001 * g * g;
      const torch::Tensor m_hat = m[i] / (1 - std::pow(0.9, s));
      const torch::Tensor v_hat = v[i] / (1 - std::pow(0.999, s));
      theta[i] = theta[i] - lr * m_hat / (v_hat.sqrt() + 1e-8);
    }
  }
  return theta;
}

std::vector<torch::Tensor> run(bool fused, int steps, double lr) {
  const Problem p = make_problem();
  ddpm::AdamOptions options;
  options.fused = fused;
  ddpm::Adam adam(p.params, p.names, options);
  for (int s = 1; s <= steps; ++s) {
    set_grads(p, s);
    adam.step(lr, torch::zeros({}));
  }
  std::vector<torch::Tensor> out;
  for (const torch::Tensor& t : p.params) out.push_back(t.detach().clone());
  return out;
}

class AdamKernels : public ::testing::TestWithParam<bool> {};

TEST_P(AdamKernels, MatchesAlgorithmOneInFloat64) {
  const std::vector<torch::Tensor> expected = reference(6, 1e-2);
  const std::vector<torch::Tensor> got = run(GetParam(), 6, 1e-2);
  for (size_t i = 0; i < got.size(); ++i) {
    const double error = (got[i].to(torch::kFloat64) - expected[i]).abs().max().item<double>();
    EXPECT_LT(error, 2e-6) << "parameter " << i;
  }
  // A sign error or a missing bias correction moves the weights by ~lr per step: far outside that tolerance.
  const std::vector<torch::Tensor> one_step_less = reference(5, 1e-2);
  EXPECT_GT((got[0].to(torch::kFloat64) - one_step_less[0]).abs().max().item<double>(), 1e-3);
}

TEST_P(AdamKernels, SkippedStepWithNanGradientsChangesNothing) {
  const Problem p = make_problem();
  ddpm::AdamOptions options;
  options.fused = GetParam();
  ddpm::Adam adam(p.params, p.names, options);
  set_grads(p, 1);
  adam.step(1e-2, torch::zeros({}));
  std::map<std::string, torch::Tensor> before;
  for (auto& [name, tensor] : adam.state()) before[name] = tensor.clone();
  std::vector<torch::Tensor> params_before;
  for (const torch::Tensor& t : p.params) params_before.push_back(t.detach().clone());

  for (const torch::Tensor& t : p.params) t.mutable_grad() = torch::full_like(t, std::nan(""));
  adam.step(1e-2, torch::ones({}));
  for (size_t i = 0; i < p.params.size(); ++i) EXPECT_TRUE(torch::equal(p.params[i], params_before[i])) << i;
  for (auto& [name, tensor] : adam.state()) EXPECT_TRUE(torch::equal(tensor, before.at(name))) << name;
  EXPECT_EQ(adam.state().at("adam/step").item<float>(), 1.0f);
}

TEST_P(AdamKernels, StateRoundTripContinuesBitIdentically) {
  const std::vector<torch::Tensor> straight = run(GetParam(), 4, 1e-2);
  const Problem p = make_problem();
  ddpm::AdamOptions options;
  options.fused = GetParam();
  std::map<std::string, torch::Tensor> saved;
  {
    ddpm::Adam first(p.params, p.names, options);
    for (int s = 1; s <= 2; ++s) {
      set_grads(p, s);
      first.step(1e-2, torch::zeros({}));
    }
    for (auto& [name, tensor] : first.state()) saved[name] = tensor.clone();
  }
  ddpm::Adam second(p.params, p.names, options);
  second.load_state(saved);
  for (int s = 3; s <= 4; ++s) {
    set_grads(p, s);
    second.step(1e-2, torch::zeros({}));
  }
  for (size_t i = 0; i < p.params.size(); ++i) EXPECT_TRUE(torch::equal(p.params[i], straight[i])) << i;
}

// The learning rate as a float32 device tensor, refilled before each step (what a replayed CUDA graph reads):
// the same result, bit for bit, as passing its value as a double, and a changed value is taken up.
TEST_P(AdamKernels, TensorLearningRateStepsLikeItsValue) {
  const std::vector<float> schedule = {1e-2f, 3e-3f, 2e-2f, 5e-4f};
  const auto train = [&](bool as_tensor) {
    const Problem p = make_problem();
    ddpm::AdamOptions options;
    options.fused = GetParam();
    ddpm::Adam adam(p.params, p.names, options);
    const torch::Tensor lr = torch::zeros({}, torch::kFloat32);
    for (size_t s = 0; s < schedule.size(); ++s) {
      set_grads(p, static_cast<int>(s) + 1);
      if (as_tensor) {
        lr.fill_(schedule[s]);
        adam.step(lr, torch::zeros({}));
      } else {
        adam.step(static_cast<double>(schedule[s]), torch::zeros({}));
      }
    }
    std::vector<torch::Tensor> out;
    for (const torch::Tensor& t : p.params) out.push_back(t.detach().clone());
    return out;
  };
  const std::vector<torch::Tensor> by_value = train(false), by_tensor = train(true);
  for (size_t i = 0; i < by_value.size(); ++i) EXPECT_TRUE(torch::equal(by_value[i], by_tensor[i])) << i;
  // On the CPU a float64 tensor carries any double exactly.
  const Problem p = make_problem();
  ddpm::AdamOptions options;
  options.fused = GetParam();
  ddpm::Adam adam(p.params, p.names, options);
  set_grads(p, 1);
  adam.step(torch::tensor(0.0123, torch::kFloat64), torch::zeros({}));
  const std::vector<torch::Tensor> by_double = run(GetParam(), 1, 0.0123);
  for (size_t i = 0; i < by_double.size(); ++i) EXPECT_TRUE(torch::equal(by_double[i], p.params[i])) << i;
  EXPECT_THROW(adam.step(torch::tensor(0.5, torch::kFloat16), torch::zeros({})), std::invalid_argument);
  // A constant 1e-2 ends elsewhere: the refilled values were read.
  const std::vector<torch::Tensor> constant = run(GetParam(), 4, static_cast<double>(1e-2f));
  EXPECT_GT((constant[0] - by_tensor[0]).abs().max().item<double>(), 1e-4);
}

INSTANTIATE_TEST_SUITE_P(FusedAndPerTensor, AdamKernels, ::testing::Values(true, false),
                         [](const ::testing::TestParamInfo<bool>& info) { return info.param ? "Fused" : "PerTensor"; });

TEST(Adam, MissingOrMisshapedStateIsAClearError) {
  const Problem p = make_problem();
  ddpm::Adam adam(p.params, p.names, {});
  std::map<std::string, torch::Tensor> state = adam.state();
  state.erase("adam/exp_avg/norm.bias");
  try {
    adam.load_state(state);
    FAIL() << "no error";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("adam/exp_avg/norm.bias"), std::string::npos) << e.what();
  }
  state = adam.state();
  state["adam/exp_avg_sq/proj.weight"] = torch::zeros({6, 5});
  EXPECT_THROW(adam.load_state(state), std::runtime_error);
}

// zero_grad drops the gradients: the next backward hands each parameter its gradient as computed, with no
// addition into a zeroed tensor (aten::add_ under AccumulateGrad), and the values are the new gradients alone.
TEST(Adam, ZeroGradDropsGradientsSoBackwardAccumulatesNothing) {
  const Problem p = make_problem();
  ddpm::Adam adam(p.params, p.names, {});
  set_grads(p, 1);  // stale gradients a zeroing would have to clear
  adam.zero_grad();
  for (const torch::Tensor& t : p.params) EXPECT_FALSE(t.grad().defined());
  ddpm::Profiler profiler(torch::Device(torch::kCPU));
  torch::Tensor loss = torch::zeros({});
  for (const torch::Tensor& t : p.params) loss = loss + t.pow(2).sum();  // one use of t: no sum of two branches
  loss.backward();
  const nlohmann::json summary = ddpm::summarize_profile(profiler.stop(), 1, /*top=*/1000);
  for (const nlohmann::json& entry : summary["top"]) {
    EXPECT_NE(entry["name"], "aten::add_") << "a gradient was accumulated into an existing tensor";
  }
  for (const torch::Tensor& t : p.params) EXPECT_TRUE(torch::equal(t.grad(), 2 * t.detach()));
}

}  // namespace
