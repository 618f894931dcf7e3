// The EMA against shadow ← rate · shadow + (1 − rate) · θ computed in float64, for every rate at once; a skipped
// update leaves every shadow bitwise unchanged; copy_to loads the chosen shadow; the shadows round-trip through
// checkpoint tensors exactly, and a missing or mis-shaped tensor is an error naming it.
#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <string>
#include <vector>

#include "trainer/optim/ema.h"

namespace {

// Two levels of names ("scale", "fc.weight", "fc.bias"), three shapes.
struct TinyImpl : torch::nn::Module {
  TinyImpl() {
    scale = register_parameter("scale", torch::randn({4}));
    fc = register_module("fc", torch::nn::Linear(3, 2));
  }
  torch::Tensor scale;
  torch::nn::Linear fc{nullptr};
};
TORCH_MODULE(Tiny);

Tiny make_model(uint64_t seed) {
  torch::manual_seed(seed);
  return Tiny();
}

// The parameters "after optimizer step `step`": new values each time, far enough from the shadows to move them.
void set_parameters(Tiny& model, int step) {
  torch::NoGradGuard no_grad;
  torch::manual_seed(1000 + step);
  for (auto& item : model->named_parameters()) item.value().copy_(torch::randn_like(item.value()) * (1.0 + step));
}

std::map<std::string, torch::Tensor> parameters_by_name(const torch::nn::Module& model) {
  std::map<std::string, torch::Tensor> out;
  for (const auto& item : model.named_parameters()) out[item.key()] = item.value().detach().clone();
  return out;
}

std::map<std::string, torch::Tensor> cloned(const std::map<std::string, torch::Tensor>& tensors) {
  std::map<std::string, torch::Tensor> out;
  for (const auto& [name, tensor] : tensors) out[name] = tensor.clone();
  return out;
}

const std::vector<double> kRates = {0.9, 0.5};
const std::vector<std::string> kNames = {"fc.bias", "fc.weight", "scale"};

TEST(ExponentialMovingAverage, NamesEveryShadowByRateAndParameter) {
  Tiny model = make_model(1);
  const ddpm::ExponentialMovingAverage ema(*model, {0.9999, 0.999, 0.5});
  EXPECT_EQ(ema.prefix(0), "ema_0.9999");
  EXPECT_EQ(ema.prefix(1), "ema_0.999");
  EXPECT_EQ(ema.prefix(2), "ema_0.5");
  std::vector<std::string> keys;
  for (const auto& [name, tensor] : ema.state()) keys.push_back(name);
  const std::vector<std::string> expected = {"ema_0.5/fc.bias",      "ema_0.5/fc.weight",      "ema_0.5/scale",
                                             "ema_0.9999/fc.bias",   "ema_0.9999/fc.weight",   "ema_0.9999/scale",
                                             "ema_0.999/fc.bias",    "ema_0.999/fc.weight",    "ema_0.999/scale"};
  std::vector<std::string> sorted_expected = expected;
  std::sort(sorted_expected.begin(), sorted_expected.end());
  EXPECT_EQ(keys, sorted_expected);
  // Every shadow starts as a copy of the model's parameters.
  const auto params = parameters_by_name(*model);
  for (const auto& [name, tensor] : ema.state()) {
    EXPECT_TRUE(torch::equal(tensor, params.at(name.substr(name.find('/') + 1)))) << name;
  }
}

TEST(ExponentialMovingAverage, MatchesTheRecurrenceInFloat64ForEveryRate) {
  Tiny model = make_model(2);
  ddpm::ExponentialMovingAverage ema(*model, kRates);
  // The float64 reference: shadow_0 = θ_0, shadow_k = rate · shadow_{k-1} + (1 − rate) · θ_k.
  std::vector<std::map<std::string, torch::Tensor>> reference(kRates.size());
  for (auto& shadows : reference) {
    for (const auto& [name, tensor] : parameters_by_name(*model)) shadows[name] = tensor.to(torch::kFloat64);
  }
  std::vector<std::map<std::string, torch::Tensor>> one_update_behind = reference;
  constexpr int kUpdates = 4;
  for (int step = 1; step <= kUpdates; ++step) {
    set_parameters(model, step);
    ema.update(*model, torch::zeros({}));
    const auto theta = parameters_by_name(*model);
    for (size_t r = 0; r < kRates.size(); ++r) {
      if (step == kUpdates) one_update_behind[r] = cloned(reference[r]);
      for (auto& [name, shadow] : reference[r]) {
        shadow = kRates[r] * shadow + (1.0 - kRates[r]) * theta.at(name).to(torch::kFloat64);
      }
    }
  }
  const auto state = ema.state();
  for (size_t r = 0; r < kRates.size(); ++r) {
    for (const std::string& name : kNames) {
      const torch::Tensor got = state.at(ema.prefix(r) + "/" + name);
      EXPECT_EQ(got.dtype(), torch::kFloat32) << name;
      const double error = (got.to(torch::kFloat64) - reference[r].at(name)).abs().max().item<double>();
      // float32 rounding of values of a few units over 4 updates: ~1e-6 at most.
      EXPECT_LT(error, 2e-6) << ema.prefix(r) << "/" << name;
      // One update missing, or the two weights swapped, moves the shadow by ~0.1 or more.
      const double behind = (got.to(torch::kFloat64) - one_update_behind[r].at(name)).abs().max().item<double>();
      EXPECT_GT(behind, 1e-2) << ema.prefix(r) << "/" << name;
    }
  }
}

// A one-parameter module whose values (and the EMA's) are exact in float32: the recurrence by hand.
TEST(ExponentialMovingAverage, HandComputedValuesOnOneParameter) {
  struct OneImpl : torch::nn::Module {
    OneImpl() { w = register_parameter("w", torch::tensor({8.0f, -4.0f})); }
    torch::Tensor w;
  };
  auto model = std::make_shared<OneImpl>();
  ddpm::ExponentialMovingAverage ema(*model, {0.75, 0.5});
  {
    torch::NoGradGuard no_grad;
    model->w.copy_(torch::tensor({0.0f, 4.0f}));
  }
  ema.update(*model, torch::zeros({}));
  // 0.75 · 8 + 0.25 · 0 = 6, 0.75 · −4 + 0.25 · 4 = −2;  0.5 · 8 + 0.5 · 0 = 4, 0.5 · −4 + 0.5 · 4 = 0.
  EXPECT_TRUE(torch::equal(ema.state().at("ema_0.75/w"), torch::tensor({6.0f, -2.0f}))) << ema.state().at("ema_0.75/w");
  EXPECT_TRUE(torch::equal(ema.state().at("ema_0.5/w"), torch::tensor({4.0f, 0.0f}))) << ema.state().at("ema_0.5/w");
  {
    torch::NoGradGuard no_grad;
    model->w.copy_(torch::tensor({2.0f, 8.0f}));
  }
  ema.update(*model, torch::zeros({}));
  // 0.75 · 6 + 0.25 · 2 = 5, 0.75 · −2 + 0.25 · 8 = 0.5;  0.5 · 4 + 0.5 · 2 = 3, 0.5 · 0 + 0.5 · 8 = 4.
  EXPECT_TRUE(torch::equal(ema.state().at("ema_0.75/w"), torch::tensor({5.0f, 0.5f}))) << ema.state().at("ema_0.75/w");
  EXPECT_TRUE(torch::equal(ema.state().at("ema_0.5/w"), torch::tensor({3.0f, 4.0f}))) << ema.state().at("ema_0.5/w");
}

TEST(ExponentialMovingAverage, SkippedUpdateLeavesEveryShadowBitwiseUnchanged) {
  Tiny model = make_model(3);
  ddpm::ExponentialMovingAverage ema(*model, kRates);
  set_parameters(model, 1);
  ema.update(*model, torch::zeros({}));
  const auto before = cloned(ema.state());
  set_parameters(model, 2);  // parameters that a taken update would move the shadows towards
  ema.update(*model, torch::ones({}));
  const auto after_skip = ema.state();
  ASSERT_EQ(after_skip.size(), before.size());
  for (const auto& [name, tensor] : before) EXPECT_TRUE(torch::equal(after_skip.at(name), tensor)) << name;
  // The same parameters with skip 0 do move them (the skip, not the parameters, held them).
  ema.update(*model, torch::zeros({}));
  for (const auto& [name, tensor] : before) EXPECT_FALSE(torch::equal(ema.state().at(name), tensor)) << name;
}

TEST(ExponentialMovingAverage, CopyToLoadsTheChosenShadow) {
  Tiny model = make_model(4);
  ddpm::ExponentialMovingAverage ema(*model, kRates);
  for (int step = 1; step <= 3; ++step) {
    set_parameters(model, step);
    ema.update(*model, torch::zeros({}));
  }
  const auto state = cloned(ema.state());
  Tiny target = make_model(5);
  for (size_t r = 0; r < kRates.size(); ++r) {
    ema.copy_to(*target, r);
    const auto loaded = parameters_by_name(*target);
    for (const std::string& name : kNames) {
      EXPECT_TRUE(torch::equal(loaded.at(name), state.at(ema.prefix(r) + "/" + name))) << r << " " << name;
    }
  }
  // The two shadows differ, so the last copy_to really replaced the first one's values.
  EXPECT_FALSE(torch::equal(state.at("ema_0.9/fc.weight"), state.at("ema_0.5/fc.weight")));
  // copy_to copies: changing the model afterwards leaves the shadow as it was.
  set_parameters(target, 9);
  EXPECT_TRUE(torch::equal(ema.state().at("ema_0.5/scale"), state.at("ema_0.5/scale")));
  EXPECT_THROW(ema.copy_to(*target, kRates.size()), std::out_of_range);
}

TEST(ExponentialMovingAverage, StateRoundTripContinuesBitIdentically) {
  Tiny model = make_model(6);
  ddpm::ExponentialMovingAverage first(*model, kRates);
  for (int step = 1; step <= 2; ++step) {
    set_parameters(model, step);
    first.update(*model, torch::zeros({}));
  }
  std::map<std::string, torch::Tensor> saved = cloned(first.state());
  saved["adam/step"] = torch::ones({});  // a checkpoint holds other tensors too: ignored
  // A fresh EMA over a model with other values, loaded from the checkpoint tensors.
  Tiny other = make_model(7);
  ddpm::ExponentialMovingAverage second(*other, kRates);
  second.load_state(saved);
  for (const auto& [name, tensor] : second.state()) EXPECT_TRUE(torch::equal(tensor, saved.at(name))) << name;
  EXPECT_EQ(second.state().count("adam/step"), 0u);
  // load_state copies: the caller's tensors can change afterwards.
  saved.at("ema_0.9/scale").add_(1.0);
  EXPECT_FALSE(torch::equal(second.state().at("ema_0.9/scale"), saved.at("ema_0.9/scale")));
  for (int step = 3; step <= 4; ++step) {
    set_parameters(model, step);
    first.update(*model, torch::zeros({}));
    second.update(*model, torch::zeros({}));
  }
  const auto a = first.state(), b = second.state();
  for (const auto& [name, tensor] : a) EXPECT_TRUE(torch::equal(tensor, b.at(name))) << name;
}

// The message may be reworded; it must name the tensor.
std::string load_error(ddpm::ExponentialMovingAverage& ema, const std::map<std::string, torch::Tensor>& tensors) {
  try {
    ema.load_state(tensors);
  } catch (const std::exception& e) {
    return e.what();
  }
  return "";
}

TEST(ExponentialMovingAverage, MissingOrMisshapedTensorIsAnErrorNamingIt) {
  Tiny model = make_model(8);
  ddpm::ExponentialMovingAverage ema(*model, kRates);
  std::map<std::string, torch::Tensor> state = cloned(ema.state());
  state.erase("ema_0.5/fc.bias");
  std::string error = load_error(ema, state);
  EXPECT_FALSE(error.empty()) << "a missing tensor was accepted";
  EXPECT_NE(error.find("ema_0.5/fc.bias"), std::string::npos) << error;

  state = cloned(ema.state());
  state["ema_0.9/fc.weight"] = torch::zeros({3, 2});  // the transpose: as many elements, another shape
  error = load_error(ema, state);
  EXPECT_FALSE(error.empty()) << "a mis-shaped tensor was accepted";
  EXPECT_NE(error.find("ema_0.9/fc.weight"), std::string::npos) << error;

  state = cloned(ema.state());
  state["ema_0.9/scale"] = torch::zeros({5});
  error = load_error(ema, state);
  EXPECT_FALSE(error.empty()) << "a mis-shaped tensor was accepted";
  EXPECT_NE(error.find("ema_0.9/scale"), std::string::npos) << error;
}

}  // namespace
