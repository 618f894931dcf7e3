// Training a DDPM: L_simple (or the true bound terms) with Adam, linear warmup, global-norm clipping and EMA,
// on every rank of an MPI job with gradients averaged over ranks; checkpointed atomically and resumed exactly.
#pragma once
#include <torch/torch.h>

#include <chrono>
#include <memory>
#include <string>

#include "data/data_loader.h"
#include "distributed/bucketing.h"
#include "distributed/communicator.h"
#include "distributed/mpi_context.h"
#include "distributed/peer_status.h"
#include "distributed/watchdog.h"
#include "trainer/checkpoint.h"
#include "trainer/config.h"
#include "trainer/diffusion.h"
#include "trainer/adam.h"
#include "trainer/ema.h"
#include "trainer/fault_injection.h"
#include "trainer/monitor.h"
#include "trainer/phase_timer.h"
#include "trainer/progress.h"
#include "trainer/step_flags.h"
#include "trainer/step_graph.h"
#include "trainer/unet.h"

namespace ddpm {

struct TrainerOptions {
  ProgressMode progress = ProgressMode::kAuto;
  // The step reads its inputs from device tensors refilled every step, as a captured CUDA graph does
  // (train.cuda_graph turns this on), without capturing: lets a CPU test check what a graph would read.
  bool static_step_inputs = false;
  // `ddpm train --sync-check`: the host waiting for the GPU inside a step is an error (trainer/sync_check.h).
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

  int64_t step() const { return step_; }
  UNet& model() { return model_; }
  const ExponentialMovingAverage& ema() const { return ema_; }
  // A line saying where the run starts from ("from scratch" or the checkpoint path).
  const std::string& start_description() const { return start_description_; }

 private:
  struct StepResult {
    torch::Tensor loss;       // scalar, this rank's batch mean
    torch::Tensor grad_norm;  // scalar, global norm before clipping
    bool stop = false;        // some rank was asked to stop: checkpoint after this step and return
  };
  // What a step's device work reads that changes from step to step, as device tensors (a captured CUDA graph
  // reads them at fixed addresses): the batch, the step index the draws hash (int64), the stop request (float32),
  // and the learning rate (float32 on GPUs, float64 on CPUs; undefined: learning_rate(step_) passed as a double).
  struct StepInputs {
    torch::Tensor images, indices, step, stop, lr;
  };
  // What it leaves on the device: this rank's loss, the gradient norm before clipping, the agreed flags.
  struct StepOutputs {
    torch::Tensor loss, grad_norm, flags;
  };
  // Host clocks inside an eager step, for the phase metrics.
  struct StepClock {
    std::chrono::steady_clock::time_point backward_done, synced;
  };

  // One step: its device work (eagerly, or replayed from the CUDA graph), then the host's bookkeeping.
  StepResult train_step(const Batch& batch);
  StepInputs eager_inputs(const Batch& batch) const;
  void fill_graph_inputs(const Batch& batch);
  // The step's device work: forward, backward, all-reduce, clipping, agreement, Adam, EMA. It changes no host
  // state, so that it can be captured. `clock`: where to note the host times (null while capturing).
  StepOutputs enqueue_step(const StepInputs& inputs, StepClock* clock);
  torch::Tensor clip_gradients();
  void check_config_matches_rank0() const;
  void check_replicas();
  // Agreement of all ranks after the backward of a step (one small collective, no host sync): [is any loss or
  // gradient non-finite, has any rank been asked to stop (SIGTERM / SIGINT)], summed over ranks, on the device.
  torch::Tensor agree(const torch::Tensor& loss, const torch::Tensor& grad_norm, const torch::Tensor& stop);
  // train.cuda_graph: refuses the runs it cannot capture, with the reason.
  void check_graph_capturable() const;
  // Host bookkeeping of the flags whose turn has come (StepFlagsQueue): counts skips, stops the run after
  // train.max_consecutive_skips in a row; true when a rank asked to stop.
  bool account_flags(bool drain);
  double parameter_norm() const;
  void evaluate_bound_now();
  [[noreturn]] void abort_job(const std::string& what, double seconds) const;
  double learning_rate(int64_t step) const;
  void broadcast_parameters();
  void save_checkpoint();
  void resume_or_start();
  void restore(const Checkpoint& checkpoint);

  Config config_;
  const MpiContext& mpi_;
  torch::Device device_;
  TrainerOptions options_;
  std::unique_ptr<Communicator> comm_;
  std::unique_ptr<PeerStatus> peer_status_;  // names the hung rank when the watchdog fires
  std::unique_ptr<Watchdog> watchdog_;
  std::unique_ptr<GradientSynchronizer> synchronizer_;  // only with more than one rank
  SyncStats last_sync_;
  std::unique_ptr<TrainingMonitor> monitor_;
  UNet eval_model_{nullptr};  // holds the EMA weights for the periodic bound evaluation
  FaultInjector faults_;  // none unless a test sets DDPM_FAULT
  int64_t consecutive_skips_ = 0;
  int64_t skipped_steps_ = 0;
  double last_data_wait_ = 0.0;
  bool stopped_by_signal_ = false;
  GaussianDiffusion diffusion_;
  UNet model_;
  std::vector<torch::Tensor> parameters_;
  std::unique_ptr<Adam> optimizer_;
  StepFlagsQueue step_flags_;
  std::unique_ptr<StepGraph> step_graph_;  // only with train.cuda_graph
  StepInputs graph_inputs_;                // the captured graph's inputs and outputs, at fixed addresses
  StepOutputs graph_outputs_;
  PhaseTimer* timer_ = nullptr;  // only while the benchmark runs
  ExponentialMovingAverage ema_;
  std::shared_ptr<const ImageDataset> dataset_;
  LoaderState loader_state_;
  int64_t step_ = 0;
  std::string start_description_;
};

// Seeds the default generators of this rank: seed and rank together, so ranks draw different t and noise.
void seed_rank_generators(uint64_t seed, int rank);

}  // namespace ddpm
