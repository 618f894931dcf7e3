// The host's bookkeeping of skipped steps, without MPI: counts, the reset by a good step, and the stop after
// train.max_consecutive_skips in a row with its message.
#include <gtest/gtest.h>

#include <stdexcept>
#include <string>

#include "trainer/loop/step_health.h"

namespace {

ddpm::StepFlags flags(int64_t step, bool nonfinite) { return {step, nonfinite, /*stop=*/false}; }

// The message of throw_if_exhausted, or "" when it does not throw.
std::string exhausted(const ddpm::StepHealth& health, int64_t step) {
  try {
    health.throw_if_exhausted(step, "runs/x");
  } catch (const std::runtime_error& e) {
    return e.what();
  }
  return "";
}

TEST(StepHealth, CountsSkipsAndAGoodStepResetsTheRun) {
  ddpm::StepHealth health(3);
  EXPECT_FALSE(health.account(flags(1, false)));
  EXPECT_TRUE(health.account(flags(2, true)));
  EXPECT_TRUE(health.account(flags(3, true)));
  EXPECT_EQ(exhausted(health, 3), "");  // two in a row, the limit is three
  EXPECT_FALSE(health.account(flags(4, false)));
  EXPECT_TRUE(health.account(flags(5, true)));
  EXPECT_TRUE(health.account(flags(6, true)));
  EXPECT_EQ(exhausted(health, 6), "");  // the good step 4 started the count again
  EXPECT_EQ(health.skipped_steps(), 4);
}

TEST(StepHealth, TooManyInARowStopTheRunNamingTheLimitTheStepAndTheRunDirectory) {
  ddpm::StepHealth health(2);
  health.account(flags(7, true));
  EXPECT_EQ(exhausted(health, 7), "");
  health.account(flags(8, true));
  EXPECT_EQ(exhausted(health, 8),
            "2 consecutive steps had a non-finite loss or gradient (train.max_consecutive_skips; last: step 8); "
            "stopping with the last good checkpoint kept in runs/x");
  EXPECT_EQ(health.skipped_steps(), 2);
}

TEST(StepHealth, AStopRequestAloneIsNoSkip) {
  ddpm::StepHealth health(1);
  EXPECT_FALSE(health.account({9, /*nonfinite=*/false, /*stop=*/true}));
  EXPECT_EQ(exhausted(health, 9), "");
  EXPECT_EQ(health.skipped_steps(), 0);
}

}  // namespace
