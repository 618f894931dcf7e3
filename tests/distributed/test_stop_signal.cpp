// The stop request: SIGTERM and SIGINT set it; a repeated SIGTERM is the same request (slurmstepd and mpirun may both
// deliver one), a second SIGINT ends the process; the handlers are restored afterwards.
#include <gtest/gtest.h>

#include <csignal>

#include "distributed/stop_signal.h"

namespace {

TEST(StopSignal, SigtermRequestsAStopAndRepeatsAreIgnored) {
  const ddpm::StopSignal stop;
  EXPECT_FALSE(ddpm::StopSignal::requested());
  EXPECT_EQ(ddpm::StopSignal::name(), "");
  EXPECT_NO_THROW(ddpm::StopSignal::throw_if_requested("sampling"));
  std::raise(SIGTERM);
  EXPECT_TRUE(ddpm::StopSignal::requested());
  EXPECT_EQ(ddpm::StopSignal::name(), "SIGTERM");
  std::raise(SIGTERM);  // still alive
  std::raise(SIGTERM);
  std::raise(SIGINT);   // a Ctrl-C after a scheduler's SIGTERM: still the first request
  EXPECT_EQ(ddpm::StopSignal::name(), "SIGTERM");
  try {
    ddpm::StopSignal::throw_if_requested("the bound evaluation of step 5");
    ADD_FAILURE() << "no StopRequested";
  } catch (const ddpm::StopRequested& e) {
    EXPECT_STREQ(e.what(), "the bound evaluation of step 5");
  }
}

TEST(StopSignal, ANewHandlerStartsWithoutARequest) {
  const ddpm::StopSignal stop;
  EXPECT_FALSE(ddpm::StopSignal::requested());
}

TEST(StopSignalDeathTest, ASecondSigintEndsTheProcess) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(
      {
        const ddpm::StopSignal stop;
        std::raise(SIGINT);
        if (ddpm::StopSignal::name() != "SIGINT") std::_Exit(3);
        std::raise(SIGINT);
        std::_Exit(4);  // not reached
      },
      ::testing::KilledBySignal(SIGINT), "");
}

TEST(StopSignalDeathTest, TheHandlersAreRestored) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(
      {
        { const ddpm::StopSignal stop; }
        std::raise(SIGTERM);  // the default action again
        std::_Exit(4);
      },
      ::testing::KilledBySignal(SIGTERM), "");
}

}  // namespace
