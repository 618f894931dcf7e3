// Training a DDPM: L_simple (or the true bound terms) with Adam, linear warmup, global-norm clipping and EMA,
// on every rank of an MPI job with gradients averaged over ranks; checkpointed atomically and resumed exactly.
// The pieces, each in its own file: the train state (trainer/checkpoint/train_state.h), the checkpointer, the
// step (train_step.h, its numerics between BEGIN/END), the step health, the training log, and the replica guard
// (distributed/replica_guard.h). This class joins them; train() is the loop.
#pragma once
#include <torch/torch.h>

#include <memory>
#include <string>

#include "data/data_loader.h"
#include "distributed/bucketing.h"
#include "distributed/communicator.h"
#include "distributed/mpi_context.h"
#include "distributed/replica_guard.h"
#include "trainer/checkpoint/train_state.h"
#include "trainer/config/config.h"
#include "trainer/diffusion/diffusion.h"
#include "trainer/diffusion/timestep_sampler.h"
#include "trainer/loop/checkpointer.h"
#include "trainer/loop/fault_injection.h"
#include "trainer/loop/step_flags.h"
#include "trainer/loop/step_health.h"
#include "trainer/loop/train_step.h"
#include "trainer/monitoring/monitor.h"
#include "trainer/monitoring/phase_timer.h"
#include "trainer/monitoring/progress.h"

namespace ddpm {

struct TrainerOptions {
  ProgressMode progress = ProgressMode::kAuto;
  // The step reads its inputs from device tensors refilled every step, as a captured CUDA graph does
  // (train.cuda_graph turns this on), without capturing: lets a CPU test check what a graph would read.
  bool static_step_inputs = false;
  // `ddpm train --sync-check`: the host waiting for the GPU inside a step is an error (distributed/sync_check.h).
  bool sync_check = false;
};

class Trainer {
 public:
  // Prepares the run directory (rank 0), builds model, optimizer and EMA, and resumes from the newest valid
  // checkpoint of run.dir when there is one. Throws with context on bad input; every rank throws together.
  Trainer(const Config& config, const MpiContext& mpi, const torch::Device& device, TrainerOptions options = {});

  // Trains until train.steps, checkpointing every train.checkpoint_every steps and at the end. On SIGTERM or
  // SIGINT every rank finishes its step, a checkpoint is committed, and train() returns early.
  void train();
  // Set when train() returned early on a stop signal.
  bool stopped_by_signal() const { return stopped_by_signal_; }

  // The benchmark's loop (`ddpm bench`): `steps` training steps from the data loader, without logging,
  // evaluation or checkpoints; each step's phases are marked on `timer` when given.
  void run_steps(int64_t steps, PhaseTimer* timer = nullptr);
  // Waits until the device and every collective issued so far are done.
  void synchronize();

  int64_t step() const { return state_.step; }
  UNet& model() { return state_.model; }
  const ExponentialMovingAverage& ema() const { return state_.ema; }
  // The importance sampler of t (train.timestep_sampler loss_second_moment), else null.
  const LossSecondMomentSampler* timestep_sampler() const { return timestep_sampler_.get(); }
  // A line saying where the run starts from ("from scratch" or the checkpoint path).
  const std::string& start_description() const { return start_description_; }

 private:
  struct StepResult {
    torch::Tensor loss;       // scalar, this rank's batch mean
    torch::Tensor grad_norm;  // scalar, global norm before clipping
    bool stop = false;        // some rank was asked to stop: checkpoint after this step and return
  };
  // The next batch and one step on it (data loading included in --sync-check's scope).
  StepResult next_step(DataLoader& loader);
  StepResult take_step(const Batch& batch);
  // Host bookkeeping of the flags whose turn has come (all of them when `drain`): skips counted, the run stopped
  // after train.max_consecutive_skips in a row (throws); true when a rank asked to stop.
  bool account_flags(bool drain);
  void check_capturable() const;
  // With loss_second_moment: the sampler, its tensors registered in the train state (checkpointed, restored).
  void make_timestep_sampler();
  // What the replica check compares: the parameters, and the timestep sampler's state.
  void check_replicas(int64_t step);
  void checkpoint();
  // The full bound of the EMA model now; false when a stop request ended it (on every rank alike).
  bool evaluate_bound_now();
  // Commits a checkpoint after a stop request and says how to resume.
  void stop_after(int64_t step);

  Config config_;
  const MpiContext& mpi_;
  const torch::Device device_;
  const TrainerOptions options_;
  std::unique_ptr<Communicator> comm_;
  ReplicaGuard guard_;
  const FaultInjector faults_;  // none unless a test sets DDPM_FAULT
  const GaussianDiffusion diffusion_;
  TrainState state_;
  std::unique_ptr<LossSecondMomentSampler> timestep_sampler_;  // only with loss_second_moment
  std::shared_ptr<const ImageDataset> dataset_;
  Checkpointer checkpointer_;
  std::string start_description_;
  std::unique_ptr<TrainingMonitor> monitor_;
  std::unique_ptr<GradientSynchronizer> synchronizer_;  // only with more than one rank, or always_reduce
  std::unique_ptr<TrainStep> step_;
  StepFlagsQueue step_flags_;
  StepHealth health_;
  UNet eval_model_{nullptr};  // holds the EMA weights for the periodic bound evaluation
  PhaseTimer* timer_ = nullptr;  // only while the benchmark runs
  double last_data_wait_ = 0.0;
  bool stopped_by_signal_ = false;
};

}  // namespace ddpm
