// StepFlagsQueue on the CPU: the flags of a step are read at once (no lag), oldest first, with drain or without;
// [non-finite count, stop count] decode to two booleans (any rank counts); the wait callback is for a device
// copy still in flight, which a CPU never has, so it is never called.
#include <gtest/gtest.h>

#include <functional>
#include <limits>
#include <vector>

#include "trainer/loop/step_flags.h"

namespace {

using Wait = std::function<void(const std::function<bool()>&)>;

// Counts its calls (the tests expect none: on the CPU every pushed tensor is ready).
struct CountingWait {
  int calls = 0;
  Wait wait() {
    return [this](const std::function<bool()>& ready) {
      ++calls;
      while (!ready()) {
      }
    };
  }
};

torch::Tensor flags(float nonfinite, float stop) { return torch::tensor({nonfinite, stop}, torch::kFloat32); }

std::vector<int64_t> steps_of(const std::vector<ddpm::StepFlags>& popped) {
  std::vector<int64_t> steps;
  for (const ddpm::StepFlags& f : popped) steps.push_back(f.step);
  return steps;
}

TEST(StepFlagsQueue, EmptyQueuePopsNothing) {
  ddpm::StepFlagsQueue queue(torch::kCPU);
  CountingWait wait;
  EXPECT_TRUE(queue.pop(false, wait.wait()).empty());
  EXPECT_TRUE(queue.pop(true, wait.wait()).empty());
  EXPECT_EQ(wait.calls, 0);
}

TEST(StepFlagsQueue, CpuReadsEveryPushedStepAtOnceOldestFirst) {
  for (const bool drain : {false, true}) {
    ddpm::StepFlagsQueue queue(torch::kCPU);
    CountingWait wait;
    queue.push(11, flags(0, 0));
    queue.push(12, flags(1, 0));
    queue.push(13, flags(0, 1));
    queue.push(14, flags(3, 2));
    const std::vector<ddpm::StepFlags> popped = queue.pop(drain, wait.wait());
    ASSERT_EQ(steps_of(popped), (std::vector<int64_t>{11, 12, 13, 14})) << "drain " << drain;
    EXPECT_FALSE(popped[0].nonfinite);
    EXPECT_FALSE(popped[0].stop);
    EXPECT_TRUE(popped[1].nonfinite);
    EXPECT_FALSE(popped[1].stop);
    EXPECT_FALSE(popped[2].nonfinite);
    EXPECT_TRUE(popped[2].stop);
    EXPECT_TRUE(popped[3].nonfinite);
    EXPECT_TRUE(popped[3].stop);
    // Popped flags are gone: the next pop has nothing.
    EXPECT_TRUE(queue.pop(drain, wait.wait()).empty());
    EXPECT_TRUE(queue.pop(!drain, wait.wait()).empty());
    EXPECT_EQ(wait.calls, 0);
  }
}

// The trainer's pattern: push one step, pop without drain (read at once on the CPU), drain before a checkpoint.
TEST(StepFlagsQueue, InterleavedPushAndPopKeepTheOrder) {
  ddpm::StepFlagsQueue queue(torch::kCPU);
  CountingWait wait;
  std::vector<int64_t> seen;
  for (int64_t step = 1; step <= 5; ++step) {
    queue.push(step, flags(step == 3 ? 1.0f : 0.0f, 0));
    const std::vector<ddpm::StepFlags> popped = queue.pop(false, wait.wait());
    ASSERT_EQ(popped.size(), 1u) << "step " << step;
    EXPECT_EQ(popped[0].step, step);
    EXPECT_EQ(popped[0].nonfinite, step == 3) << "step " << step;
    EXPECT_FALSE(popped[0].stop);
  }
  queue.push(6, flags(0, 1));
  queue.push(7, flags(0, 0));
  const std::vector<ddpm::StepFlags> drained = queue.pop(true, wait.wait());
  EXPECT_EQ(steps_of(drained), (std::vector<int64_t>{6, 7}));
  ASSERT_EQ(drained.size(), 2u);
  EXPECT_TRUE(drained[0].stop);
  EXPECT_FALSE(drained[1].stop);
  EXPECT_EQ(wait.calls, 0);
}

// The counts are sums over ranks: any count above zero is a yes, zero a no.
TEST(StepFlagsQueue, DecodesCountsSummedOverRanks) {
  ddpm::StepFlagsQueue queue(torch::kCPU);
  const std::vector<std::pair<float, bool>> counts = {{0.0f, false}, {1.0f, true}, {2.0f, true}, {7.0f, true},
                                                      {0.5f, true},  {-0.0f, false}};
  int64_t step = 100;
  for (const auto& [count, expected] : counts) {
    queue.push(step++, flags(count, 0));
    queue.push(step++, flags(0, count));
  }
  // A step's nonfinite and stop are read from their own elements: [nonfinite count, stop count].
  const std::vector<ddpm::StepFlags> popped = queue.pop(true, nullptr);  // never called on the CPU
  ASSERT_EQ(popped.size(), 2 * counts.size());
  for (size_t i = 0; i < counts.size(); ++i) {
    const auto& [count, expected] = counts[i];
    EXPECT_EQ(popped[2 * i].step, 100 + static_cast<int64_t>(2 * i));
    EXPECT_EQ(popped[2 * i].nonfinite, expected) << "nonfinite count " << count;
    EXPECT_FALSE(popped[2 * i].stop) << "nonfinite count " << count;
    EXPECT_FALSE(popped[2 * i + 1].nonfinite) << "stop count " << count;
    EXPECT_EQ(popped[2 * i + 1].stop, expected) << "stop count " << count;
  }
}

// What the trainer pushes: the all-reduced [bad, stop] as float32 computed on the host.
TEST(StepFlagsQueue, ReadsFlagsComputedLikeTheTrainersAgreement) {
  ddpm::StepFlagsQueue queue(torch::kCPU);
  const torch::Tensor loss = torch::tensor(std::numeric_limits<float>::infinity());
  const torch::Tensor grad_norm = torch::tensor(1.5f);
  const torch::Tensor bad = torch::logical_not(torch::isfinite(loss) & torch::isfinite(grad_norm)).to(torch::kFloat32);
  queue.push(42, torch::stack({bad, torch::tensor(false).to(torch::kFloat32)}));
  const std::vector<ddpm::StepFlags> popped = queue.pop(false, nullptr);
  ASSERT_EQ(popped.size(), 1u);
  EXPECT_EQ(popped[0].step, 42);
  EXPECT_TRUE(popped[0].nonfinite);
  EXPECT_FALSE(popped[0].stop);
}

}  // namespace
