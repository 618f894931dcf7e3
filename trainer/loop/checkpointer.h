// The run directory's checkpoints as the training loop uses them: at start, resume from the newest one that
// verifies (or start afresh in an empty directory, and refuse a directory of another run); during training,
// commit the train state of every rank (rank 0 writes, atomically) and keep the newest train.keep_checkpoints.
#pragma once
#include <torch/torch.h>

#include <string>

#include "distributed/mpi_context.h"
#include "distributed/watchdog.h"
#include "trainer/checkpoint/train_state.h"
#include "trainer/config/config.h"
#include "trainer/loop/fault_injection.h"

namespace ddpm {

// What a committed checkpoint cost, for the metrics.
struct CheckpointReceipt {
  double seconds = 0.0;
  double bytes = 0.0;
};

class Checkpointer {
 public:
  Checkpointer(const Config& config, const MpiContext& mpi, const torch::Device& device, Watchdog& watchdog,
               const FaultInjector& faults);

  // Collective. Rank 0 prepares run.dir (created, interrupted writes removed) and picks the newest checkpoint
  // that verifies; every rank restores it into `state`. Then rank 0 records the resolved config in run.dir.
  // Returns "from scratch" or "resumed at step N from PATH". Throws on every rank when any rank fails.
  std::string resume_or_start(TrainState& state) const;
  // Collective: every rank's generator states gathered, rank 0 writes the checkpoint of `state` and prunes the
  // old ones. Throws on every rank, naming the step and the cause, when the write fails.
  CheckpointReceipt save(const TrainState& state) const;

 private:
  CheckpointLabel label() const;

  const Config& config_;
  const MpiContext& mpi_;
  const torch::Device device_;
  Watchdog& watchdog_;
  const FaultInjector& faults_;
};

}  // namespace ddpm
