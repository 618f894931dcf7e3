// The DDPM_FAULT grammar: fault ("," fault)*, fault = kind "@" step ["+"] [":" rank]. Valid specs arm exactly the
// faults they name, at their steps and on their ranks; each malformed one is rejected with an error naming the
// offending part; the checkpoint kills hit the phase their kind names.
#include <gtest/gtest.h>

#include <csignal>
#include <cstdlib>
#include <stdexcept>
#include <string>
#include <vector>

#include "trainer/loop/fault_injection.h"

namespace {

using ddpm::FaultInjector;
using ddpm::FaultKind;

const std::vector<FaultKind> kAllKinds = {
    FaultKind::kKillInCheckpointWrite, FaultKind::kKillBeforeCheckpointRename, FaultKind::kKillBeforeCheckpointDirSync,
    FaultKind::kNanInput,              FaultKind::kNanLoss,                    FaultKind::kNanGrad,
    FaultKind::kHang,
};

// The steps 0..20 at which `kind` is active.
std::vector<int64_t> active_steps(const FaultInjector& faults, FaultKind kind) {
  std::vector<int64_t> steps;
  for (int64_t step = 0; step <= 20; ++step) {
    if (faults.active(kind, step)) steps.push_back(step);
  }
  return steps;
}

std::vector<int64_t> from(int64_t first) {
  std::vector<int64_t> steps;
  for (int64_t step = first; step <= 20; ++step) steps.push_back(step);
  return steps;
}

TEST(FaultInjection, NoSpecMeansNoFault) {
  for (const FaultInjector& faults : {FaultInjector(), FaultInjector("", 0)}) {
    for (const FaultKind kind : kAllKinds) EXPECT_TRUE(active_steps(faults, kind).empty()) << static_cast<int>(kind);
    EXPECT_FALSE(faults.injects_into_step());
  }
}

TEST(FaultInjection, OneStepOnlyAtThatStepOnEveryRank) {
  for (const int rank : {0, 1, 7}) {
    const FaultInjector faults("nan_loss@5", rank);
    EXPECT_EQ(active_steps(faults, FaultKind::kNanLoss), std::vector<int64_t>{5}) << rank;
    for (const FaultKind kind : kAllKinds) {
      if (kind != FaultKind::kNanLoss) {
        EXPECT_TRUE(active_steps(faults, kind).empty()) << static_cast<int>(kind);
      }
    }
  }
}

TEST(FaultInjection, PlusMeansThatStepAndEveryLaterOne) {
  const FaultInjector faults("nan_input@3+", 0);
  EXPECT_EQ(active_steps(faults, FaultKind::kNanInput), from(3));
  EXPECT_TRUE(faults.active(FaultKind::kNanInput, 1000000));
  EXPECT_TRUE(active_steps(faults, FaultKind::kNanLoss).empty());
}

TEST(FaultInjection, RankSuffixArmsThatRankOnly) {
  const std::string spec = "nan_grad@3+:1,hang@7:0,kill_in_checkpoint_write@10,nan_loss@4:2";
  const FaultInjector rank0(spec, 0), rank1(spec, 1), rank2(spec, 2), rank3(spec, 3);
  EXPECT_TRUE(active_steps(rank0, FaultKind::kNanGrad).empty());
  EXPECT_EQ(active_steps(rank1, FaultKind::kNanGrad), from(3));
  EXPECT_TRUE(active_steps(rank2, FaultKind::kNanGrad).empty());

  EXPECT_EQ(active_steps(rank0, FaultKind::kHang), std::vector<int64_t>{7});
  EXPECT_TRUE(active_steps(rank1, FaultKind::kHang).empty());

  EXPECT_EQ(active_steps(rank2, FaultKind::kNanLoss), std::vector<int64_t>{4});
  EXPECT_TRUE(active_steps(rank0, FaultKind::kNanLoss).empty());
  EXPECT_TRUE(active_steps(rank1, FaultKind::kNanLoss).empty());

  // Without ":rank": every rank.
  for (const FaultInjector* faults : {&rank0, &rank1, &rank2, &rank3}) {
    EXPECT_EQ(active_steps(*faults, FaultKind::kKillInCheckpointWrite), std::vector<int64_t>{10});
    EXPECT_TRUE(active_steps(*faults, FaultKind::kNanInput).empty());
  }
  // Rank 3 is named by no rank-specific fault: only the every-rank one.
  EXPECT_TRUE(active_steps(rank3, FaultKind::kHang).empty());
  EXPECT_FALSE(rank3.injects_into_step());
  EXPECT_TRUE(rank1.injects_into_step());
  EXPECT_TRUE(rank2.injects_into_step());
  EXPECT_FALSE(rank0.injects_into_step());  // its faults are a hang and a kill: not in the step
}

TEST(FaultInjection, SeveralFaultsOfOneKindAddUp) {
  const FaultInjector faults("nan_loss@2,nan_loss@6,nan_loss@15+", 0);
  EXPECT_EQ(active_steps(faults, FaultKind::kNanLoss), (std::vector<int64_t>{2, 6, 15, 16, 17, 18, 19, 20}));
}

TEST(FaultInjection, EveryKindHasItsName) {
  const std::vector<std::pair<std::string, FaultKind>> names = {
      {"kill_in_checkpoint_write", FaultKind::kKillInCheckpointWrite},
      {"kill_before_checkpoint_rename", FaultKind::kKillBeforeCheckpointRename},
      {"kill_before_checkpoint_dir_sync", FaultKind::kKillBeforeCheckpointDirSync},
      {"nan_input", FaultKind::kNanInput},
      {"nan_loss", FaultKind::kNanLoss},
      {"nan_grad", FaultKind::kNanGrad},
      {"hang", FaultKind::kHang},
  };
  for (const auto& [name, kind] : names) {
    const FaultInjector faults(name + "@9:4", 4);
    for (const FaultKind other : kAllKinds) {
      EXPECT_EQ(active_steps(faults, other), other == kind ? std::vector<int64_t>{9} : std::vector<int64_t>{}) << name;
    }
    const bool in_step = kind == FaultKind::kNanInput || kind == FaultKind::kNanLoss || kind == FaultKind::kNanGrad;
    EXPECT_EQ(faults.injects_into_step(), in_step) << name;
  }
}

TEST(FaultInjection, ReadsTheEnvironmentVariable) {
  ::unsetenv("DDPM_FAULT");
  EXPECT_TRUE(active_steps(FaultInjector::from_environment(0), FaultKind::kNanGrad).empty());
  ::setenv("DDPM_FAULT", "", 1);
  EXPECT_TRUE(active_steps(FaultInjector::from_environment(0), FaultKind::kNanGrad).empty());
  ::setenv("DDPM_FAULT", "nan_grad@4:1", 1);
  EXPECT_EQ(active_steps(FaultInjector::from_environment(1), FaultKind::kNanGrad), std::vector<int64_t>{4});
  EXPECT_TRUE(active_steps(FaultInjector::from_environment(0), FaultKind::kNanGrad).empty());
  ::setenv("DDPM_FAULT", "nan_grad@four", 1);
  EXPECT_THROW(FaultInjector::from_environment(0), std::invalid_argument);
  ::unsetenv("DDPM_FAULT");
}

// The message of the error `spec` gives on `rank`; "" when it parses.
std::string parse_error(const std::string& spec, int rank = 0) {
  try {
    FaultInjector faults(spec, rank);
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
  return "";
}

TEST(FaultInjection, MalformedSpecsAreRejectedNamingTheBadPart) {
  struct Case {
    std::string spec;
    std::vector<std::string> fragments;  // each must be in the message
  };
  const std::vector<Case> cases = {
      {"nan_loss5", {"DDPM_FAULT", "'nan_loss5'", "kind@step"}},                       // no '@'
      {"nan_los@5", {"DDPM_FAULT", "unknown fault kind", "'nan_los@5'"}},             // misspelt kind
      {"NAN_LOSS@5", {"unknown fault kind", "'NAN_LOSS@5'"}},                         // kinds are lower case
      {"@5", {"unknown fault kind", "'@5'"}},                                         // no kind
      {"nan_loss@", {"'nan_loss@'", "'' is not a step or rank number"}},              // no step
      {"nan_loss@x", {"'nan_loss@x'", "'x' is not a step or rank number"}},           // step not a number
      {"nan_loss@-5", {"'-5' is not a step or rank number"}},                         // negative step
      {"nan_loss@5++", {"'nan_loss@5++'", "'5+' is not a step or rank number"}},       // two pluses
      {"nan_loss@+", {"'' is not a step or rank number"}},                            // a plus alone
      {"nan_loss@5:", {"'nan_loss@5:'", "'' is not a step or rank number"}},          // no rank after ':'
      {"nan_loss@5:r0", {"'r0' is not a step or rank number"}},                       // rank not a number
      {"nan_loss@5:0:1", {"'0:1' is not a step or rank number"}},                     // two ranks
      {"nan_loss@5@6", {"'5@6' is not a step or rank number"}},                       // two '@'
      {"nan_loss@1234567890123456789", {"'1234567890123456789' is not a step"}},      // too many digits
      {"nan_loss@5, hang@6", {"unknown fault kind", "' hang@6'"}},                    // a space after ','
      {"nan_loss@5,,hang@6", {"'' is not kind@step"}},                                // an empty fault
      {",nan_loss@5", {"'' is not kind@step"}},                                       // a leading ','
      {"nan_loss@5,hang", {"'hang' is not kind@step"}},                               // the second fault bad
      {"nan_loss@5,", {"'nan_loss@5,' ends with a comma"}},                           // a trailing ','
      {"nan_loss@0", {"'nan_loss@0'", "steps count from 1"}},                         // a step that never comes
  };
  for (const Case& c : cases) {
    const std::string error = parse_error(c.spec);
    EXPECT_FALSE(error.empty()) << "accepted: " << c.spec;
    for (const std::string& fragment : c.fragments) {
      EXPECT_NE(error.find(fragment), std::string::npos) << c.spec << ": '" << fragment << "' not in: " << error;
    }
  }
}

// Every rank checks every fault, its own or not: a typo aimed at rank 1 fails on rank 0 too.
TEST(FaultInjection, MalformedSpecIsRejectedOnEveryRank) {
  for (int rank : {0, 1}) {
    EXPECT_NE(parse_error("nan_loss@x:1", rank).find("'x'"), std::string::npos) << rank;
    EXPECT_NE(parse_error("nan_loss@0:1", rank).find("steps count from 1"), std::string::npos) << rank;
  }
  EXPECT_FALSE(parse_error("nan_loss@5:-1", 0).empty());
}

// The kill faults: the process dies of SIGKILL at the phase its kind names, at its step, and nowhere else.
TEST(FaultInjectionDeathTest, CheckpointKillsHitTheirPhaseAndStepOnly) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  using Phase = ddpm::CheckpointWritePhase;
  const std::vector<std::pair<std::string, Phase>> kills = {
      {"kill_in_checkpoint_write", Phase::kPartlyWritten},
      {"kill_before_checkpoint_rename", Phase::kWrittenAndSynced},
      {"kill_before_checkpoint_dir_sync", Phase::kRenamed},
  };
  for (const auto& [name, phase] : kills) {
    const FaultInjector faults(name + "@4", 0);
    EXPECT_EXIT(faults.at_checkpoint_phase(phase, 4), ::testing::KilledBySignal(SIGKILL), "") << name;
    // Other phases, other steps: no kill (a kill here ends the test binary, which fails it).
    for (const auto& [other_name, other_phase] : kills) {
      if (other_phase != phase) faults.at_checkpoint_phase(other_phase, 4);
    }
    faults.at_checkpoint_phase(phase, 3);
    faults.at_checkpoint_phase(phase, 5);
  }
  const FaultInjector hang("hang@4", 0);
  hang.maybe_hang(3);  // returns: only step 4 hangs
  hang.maybe_hang(5);
}

}  // namespace
