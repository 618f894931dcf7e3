// Faults on purpose, for the fault-injection tests: the moments they must hit (inside a checkpoint write, one
// rank's gradient at one step) are too short or too specific for a kill at a random time to reach reliably.
//
// Chosen by the environment variable DDPM_FAULT, read once when training starts; unset (always, outside tests)
// means no fault and no cost beyond an integer compare per point. Grammar:
//   DDPM_FAULT = fault ("," fault)*      fault = kind "@" step ["+"] [":" rank]
// "5" is step 5 only, "5+" step 5 and every later one; without ":rank" every rank. Steps count from 1 (the step
// being trained, or the step a checkpoint holds). Kinds:
//   kill_in_checkpoint_write       SIGKILL with half of the checkpoint's temp file written
//   kill_before_checkpoint_rename  SIGKILL with the temp file written and synced, not yet renamed
//   kill_before_checkpoint_dir_sync  SIGKILL after the rename, before the directory is synced
//   nan_input   one input pixel of the batch is NaN        nan_loss   the loss is NaN (gradients stay finite)
//   nan_grad    one gradient element is NaN after the all-reduce, on this rank only
//   hang        the rank stops making progress outside any collective (sleeps until killed)
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "trainer/checkpoint/checkpoint.h"

namespace ddpm {

enum class FaultKind {
  kKillInCheckpointWrite,
  kKillBeforeCheckpointRename,
  kKillBeforeCheckpointDirSync,
  kNanInput,
  kNanLoss,
  kNanGrad,
  kHang,
};

class FaultInjector {
 public:
  FaultInjector() = default;  // no faults
  // Parses `spec` (the DDPM_FAULT grammar) for the process of `rank`. Throws std::invalid_argument naming the
  // offending part.
  FaultInjector(const std::string& spec, int rank);
  // From the DDPM_FAULT environment variable; no faults when it is unset or empty.
  static FaultInjector from_environment(int rank);

  bool active(FaultKind kind, int64_t step) const;
  // Whether any fault alters the training step itself (the NaN kinds), decided on the host step by step.
  bool injects_into_step() const;
  // For write_checkpoint's observer: kills this process at the phase a kill_*checkpoint* fault names.
  void at_checkpoint_phase(CheckpointWritePhase phase, int64_t step) const;
  // Sleeps forever when a hang fault is active for `step`.
  void maybe_hang(int64_t step) const;

 private:
  struct Fault {
    FaultKind kind;
    int64_t step;
    bool and_later;
  };
  std::vector<Fault> faults_;
};

}  // namespace ddpm
