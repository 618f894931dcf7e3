// The profile summary of `ddpm bench --profile-steps`: self times of nested events, busy time as the union of
// intervals over tracks, per-step figures, ranking; and the Kineto collector on real CPU operators.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <random>
#include <string>

#include "trainer/tools/profile.h"

namespace {

constexpr uint64_t kMs = 1'000'000;  // ns

const nlohmann::json* find_listed(const nlohmann::json& summary, const std::string& name) {
  for (const nlohmann::json& entry : summary["top"]) {
    if (entry["name"] == name) return &entry;
  }
  return nullptr;
}

// One track: A [0, 100) holds B [10, 40), which holds C [20, 30), and D [50, 60); then E [100, 150) after A;
// a second track: F [140, 200). Over 2 steps.
std::vector<ddpm::ProfiledEvent> nested_events() {
  return {{"A", 1, 0, 100 * kMs},       {"B", 1, 10 * kMs, 40 * kMs},  {"C", 1, 20 * kMs, 30 * kMs},
          {"D", 1, 50 * kMs, 60 * kMs}, {"E", 1, 100 * kMs, 150 * kMs}, {"F", 2, 140 * kMs, 200 * kMs}};
}

TEST(ProfileSummary, SelfTimesSubtractNestedEventsAndBusyTimeIsTheUnion) {
  std::vector<ddpm::ProfiledEvent> events = nested_events();
  std::shuffle(events.begin(), events.end(), std::mt19937(7));  // the collector's order is not the tracks'
  const nlohmann::json summary = ddpm::summarize_profile(events, /*steps=*/2);
  EXPECT_EQ(summary["steps"], 2);
  EXPECT_DOUBLE_EQ(summary["events_per_step"].get<double>(), 3.0);
  // Union of [0, 150) and [140, 200): 200 ms over 2 steps; the overlap of E and F counted once.
  EXPECT_DOUBLE_EQ(summary["busy_ms_per_step"].get<double>(), 100.0);
  // Self: A 100 - 30 (B) - 10 (D) = 60; B 30 - 10 (C) = 20; C 10; D 10; E 50; F 60: 210 ms, 105 a step.
  EXPECT_DOUBLE_EQ(summary["self_ms_per_step"].get<double>(), 105.0);
  const std::vector<std::pair<std::string, double>> expected = {{"A", 30.0}, {"F", 30.0}, {"E", 25.0},
                                                                {"B", 10.0}, {"C", 5.0},  {"D", 5.0}};
  ASSERT_EQ(summary["top"].size(), expected.size());
  for (size_t i = 0; i < expected.size(); ++i) {  // ranked by self time; ties by name
    EXPECT_EQ(summary["top"][i]["name"], expected[i].first) << i;
    EXPECT_DOUBLE_EQ(summary["top"][i]["self_ms_per_step"].get<double>(), expected[i].second) << i;
    EXPECT_DOUBLE_EQ(summary["top"][i]["calls_per_step"].get<double>(), 0.5) << i;
  }
  EXPECT_DOUBLE_EQ(summary["rest_self_ms_per_step"].get<double>(), 0.0);
}

TEST(ProfileSummary, CallsOfOneNameAddUpAndTheRestIsWhatTopLeavesOut) {
  std::vector<ddpm::ProfiledEvent> events;
  for (uint64_t i = 0; i < 4; ++i) events.push_back({"kernel", 7, i * 10 * kMs, i * 10 * kMs + 4 * kMs});
  events.push_back({"copy", 9, 0, 2 * kMs});
  events.push_back({"fill", 9, 3 * kMs, 4 * kMs});
  const nlohmann::json summary = ddpm::summarize_profile(events, /*steps=*/4, /*top=*/1);
  ASSERT_EQ(summary["top"].size(), 1u);
  EXPECT_EQ(summary["top"][0]["name"], "kernel");
  EXPECT_DOUBLE_EQ(summary["top"][0]["self_ms_per_step"].get<double>(), 4.0);
  EXPECT_DOUBLE_EQ(summary["top"][0]["calls_per_step"].get<double>(), 1.0);
  EXPECT_DOUBLE_EQ(summary["rest_self_ms_per_step"].get<double>(), 0.75);  // copy 2 + fill 1, over 4 steps
  EXPECT_EQ(summary["distinct_names"], 3);
  // copy [0, 2) lies inside kernel [0, 4) in time but on another track: busy is [0, 4) ∪ 3 more kernels.
  EXPECT_DOUBLE_EQ(summary["busy_ms_per_step"].get<double>(), 4.0);
}

TEST(ProfileSummary, LongNamesAreCutAndStepsMustBePositive) {
  const std::string long_name(500, 'k');
  const nlohmann::json summary = ddpm::summarize_profile({{long_name, 1, 0, kMs}}, 1);
  const std::string listed = summary["top"][0]["name"];
  EXPECT_EQ(listed, long_name.substr(0, 200) + "...");
  EXPECT_THROW(ddpm::summarize_profile({}, 0), std::invalid_argument);
  const nlohmann::json empty = ddpm::summarize_profile({}, 3);
  EXPECT_DOUBLE_EQ(empty["busy_ms_per_step"].get<double>(), 0.0);
  EXPECT_TRUE(empty["top"].empty());
}

TEST(Profiler, CollectsTheOperatorsRunOnTheCpuWithTheirNesting) {
  const torch::Tensor a = torch::randn({256, 256}), b = torch::randn({256, 256});
  ddpm::Profiler profiler(torch::Device(torch::kCPU));
  torch::Tensor c;
  for (int i = 0; i < 3; ++i) c = torch::matmul(a, b).relu();
  const std::vector<ddpm::ProfiledEvent> events = profiler.stop();
  const nlohmann::json summary = ddpm::summarize_profile(events, 3);
  const nlohmann::json* mm = find_listed(summary, "aten::mm");
  const nlohmann::json* matmul = find_listed(summary, "aten::matmul");
  ASSERT_NE(mm, nullptr) << summary.dump(1);
  ASSERT_NE(matmul, nullptr) << summary.dump(1);
  EXPECT_DOUBLE_EQ((*mm)["calls_per_step"].get<double>(), 1.0);
  // aten::matmul calls aten::mm: the multiply's time is mm's own, matmul keeps only its dispatch.
  EXPECT_GT((*mm)["self_ms_per_step"].get<double>(), (*matmul)["self_ms_per_step"].get<double>());
  EXPECT_GT(summary["busy_ms_per_step"].get<double>(), 0.0);
  EXPECT_LE(summary["self_ms_per_step"].get<double>(), summary["busy_ms_per_step"].get<double>() * 1.000001);
  EXPECT_TRUE(c.defined());
}

TEST(Profiler, StoppedTwiceIsAnErrorAndAFreshOneCanStartAfter) {
  {
    ddpm::Profiler profiler(torch::Device(torch::kCPU));
    (void)profiler.stop();
    EXPECT_THROW(profiler.stop(), std::logic_error);
  }
  { ddpm::Profiler unstopped(torch::Device(torch::kCPU)); }  // the destructor stops it
  ddpm::Profiler again(torch::Device(torch::kCPU));
  (void)torch::ones({4}).sum();
  EXPECT_FALSE(again.stop().empty());
}

}  // namespace
