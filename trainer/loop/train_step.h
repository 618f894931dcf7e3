// One training step (Algorithm 1 with Adam, clipping, EMA and the all-ranks agreement; the objective of
// diffusion.loss, losses.h; t uniform or importance-sampled, timestep_sampler.h), its device work read top to bottom
// in enqueue(). It runs eagerly, or from device tensors refilled every step and replayed from a CUDA
// graph (train.cuda_graph); both queue the same work and change no host state, so a step can be captured.
#pragma once
#include <torch/torch.h>

#include <memory>

#include "data/batch.h"
#include "distributed/bucketing.h"
#include "distributed/communicator.h"
#include "distributed/watchdog.h"
#include "trainer/checkpoint/train_state.h"
#include "trainer/config/config.h"
#include "trainer/diffusion/diffusion.h"
#include "trainer/diffusion/timestep_sampler.h"
#include "trainer/loop/step_hooks.h"
#include "trainer/model/step_graph.h"
#include "trainer/monitoring/monitor.h"
#include "trainer/optim/lr_schedule.h"

namespace ddpm {

// What a step leaves on the device: this rank's loss, the gradient norm before clipping, and the agreed flags
// (float32 [2], summed over ranks: [non-finite count, stop count]).
struct StepOutputs {
  torch::Tensor loss, grad_norm, flags;
};

class TrainStep {
 public:
  // `synchronizer`: null with one rank (nothing to all-reduce). `static_inputs`: read the step's inputs from device
  // tensors refilled every step, as a captured graph does (train.cuda_graph captures it; a CPU test checks it).
  // `timestep_sampler`: null under train.timestep_sampler uniform; else updated by every step.
  TrainStep(const Config& config, const torch::Device& device, const GaussianDiffusion& diffusion, TrainState& state,
            Communicator& comm, Watchdog& watchdog, TrainingMonitor& monitor, GradientSynchronizer* synchronizer,
            LossSecondMomentSampler* timestep_sampler, bool static_inputs);
  TrainStep(const TrainStep&) = delete;
  TrainStep& operator=(const TrainStep&) = delete;

  // Queues step state.step + 1 on `batch`. `timer`: the benchmark's, or null.
  StepOutputs run(const Batch& batch, const FaultInjector& faults, PhaseTimer* timer, StepClock& clock);
  const SyncStats& last_sync() const { return last_sync_; }

 private:
  // What the step's device work reads that changes from step to step: the batch, the step index the keyed draws
  // hash (int64, the completed steps), the stop request (float32), and the learning rate (float32 on GPUs,
  // float64 on CPUs; undefined in an eager step, which passes the schedule's double).
  struct Inputs {
    torch::Tensor images, indices, step, stop, lr;
  };
  Inputs eager_inputs(const Batch& batch) const;
  void refill_static_inputs(const Batch& batch);
  StepOutputs enqueue(const Inputs& inputs, const StepHooks& hooks);
  torch::Tensor clip_gradients();
  // Every rank's (t, loss) of this step ordered by data set index (an all-gather as a sum of zero-padded slices):
  // what each rank feeds the timestep sampler, so that all hold one state, the same as one rank with N× the batch.
  std::pair<torch::Tensor, torch::Tensor> losses_of_all_ranks(const torch::Tensor& indices, const torch::Tensor& t,
                                                              const torch::Tensor& losses);
  // [is any loss or gradient non-finite, has any rank been asked to stop], summed over ranks on the device.
  torch::Tensor agree(const torch::Tensor& loss, const torch::Tensor& grad_norm, const torch::Tensor& stop);

  const Config& config_;
  const torch::Device device_;
  const GaussianDiffusion& diffusion_;
  TrainState& state_;
  Communicator& comm_;
  Watchdog& watchdog_;
  TrainingMonitor& monitor_;
  GradientSynchronizer* const synchronizer_;
  LossSecondMomentSampler* const timestep_sampler_;
  const WarmupSchedule lr_;
  const bool static_inputs_;
  std::unique_ptr<StepGraph> graph_;  // only with train.cuda_graph
  Inputs static_;                     // the static inputs and outputs, at fixed addresses
  StepOutputs static_outputs_;
  SyncStats last_sync_;
};

}  // namespace ddpm
