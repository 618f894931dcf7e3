// What the loop reports every train.log_every steps (and at the last): the loss averaged over the interval and
// the ranks, the gradient norm, learning rate, throughput and ETA, to the progress line and train_log.jsonl
// (rank 0) and to the metrics (every rank).
#pragma once
#include <torch/torch.h>

#include <memory>

#include "distributed/bucketing.h"
#include "distributed/communicator.h"
#include "distributed/mpi_context.h"
#include "distributed/watchdog.h"
#include "trainer/config/config.h"
#include "trainer/monitoring/monitor.h"
#include "trainer/monitoring/progress.h"
#include "trainer/optim/lr_schedule.h"

namespace ddpm {

class TrainingLog {
 public:
  // Opens rank 0's progress and <run.dir>/train_log.jsonl.
  TrainingLog(const Config& config, const MpiContext& mpi, Communicator& comm, Watchdog& watchdog,
              TrainingMonitor& monitor, ProgressMode mode);
  // The throughput is measured from now, when training starts at `step`.
  void start(int64_t step) { throughput_.start(step); }

  // After step `step` (counted from 1): adds its loss (on the device); at a logging step, averages and reports.
  // Collective at logging steps (the loss average over ranks).
  void record(int64_t step, const torch::Tensor& loss, const torch::Tensor& grad_norm, const SyncStats& sync,
              int64_t skipped_steps, const std::vector<torch::Tensor>& parameters);
  void finish();

 private:
  const Config& config_;
  const MpiContext& mpi_;
  Communicator& comm_;
  Watchdog& watchdog_;
  TrainingMonitor& monitor_;
  const WarmupSchedule lr_;
  std::unique_ptr<Progress> progress_;  // rank 0 only
  Throughput throughput_;
  torch::Tensor loss_sum_;  // float64 on the device, since the last logging step
  int64_t losses_ = 0;
};

// ‖θ‖ over all parameters (a host sync: logging steps only).
double parameter_norm(const std::vector<torch::Tensor>& parameters);

}  // namespace ddpm
