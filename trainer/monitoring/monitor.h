// The trainer's side of monitoring: accumulates per-step figures on the device (no host sync per step),
// turns them into a MetricsSnapshot at logging steps, runs the periodic full-bound evaluation, and owns the
// exporter of this rank and the Prometheus file_sd file of the job.
#pragma once
#include <torch/torch.h>

#include <memory>
#include <string>

#include "distributed/bucketing.h"
#include "distributed/mpi_context.h"
#include "trainer/config/config.h"
#include "trainer/diffusion/diffusion.h"
#include "trainer/diffusion/losses.h"
#include "trainer/diffusion/timestep_sampler.h"
#include "trainer/eval/inference.h"
#include "trainer/monitoring/metrics.h"
#include "trainer/monitoring/progress.h"

namespace ddpm {

class TrainingMonitor {
 public:
  // Starts this rank's exporter (when monitoring.enabled) and, on rank 0, writes <run.dir>/prometheus_targets.json
  // with every rank's address. Collective: every rank must construct it.
  TrainingMonitor(const Config& config, const MpiContext& mpi, const GaussianDiffusion& diffusion,
                  const torch::Device& device);

  // Per step, from what the step computed anyway (the model's output on the batch and its losses): the bound terms
  // L_t of the sampled t (the objective's own when it has them), ε-MSE by t, the mean log σ² by t (a learned
  // variance), L_T of the batch. No extra forward pass, no host sync. `weights`: the importance weights 1/(T·p_t) of
  // an importance-sampled t (undefined: uniform t), so that the range sums stay estimates of the uniform-t ones.
  void observe_batch(const TrainingLosses& losses, const torch::Tensor& output, const torch::Tensor& x0,
                     const torch::Tensor& x_t, const torch::Tensor& t, const torch::Tensor& weights = {});
  // The importance sampler of t whose probabilities are exported at every report (null: none).
  void watch_timestep_sampler(const LossSecondMomentSampler* sampler) { timestep_sampler_ = sampler; }
  // How many timesteps have a full loss history (the sampler is warm at T); -1 without a sampler. A host sync.
  int64_t timestep_sampler_filled() const;
  void observe_phases(double data_wait, double forward_backward, double exposed_comm, double optimizer);
  void observe_sync(const SyncStats& stats);
  void observe_checkpoint(int64_t step, double seconds, double bytes);
  void observe_nonfinite_step();

  // At a logging step: turns the interval's sums into gauges and publishes a snapshot.
  // `report`: the figures of the progress line (all ranks' images/s; exported per rank); `param_norm`: ‖θ‖.
  void report(const StepReport& report, double param_norm);
  // Full bound of `model` over the held-out batch (split across ranks); publishes it and, on rank 0, appends
  // the per-t vector to <run.dir>/bound_eval.jsonl. Collective.
  void evaluate(int64_t step, UNet& model);
  bool wants_eval(int64_t step) const;

 private:
  BoundSnapshot interval_bound() const;
  // Timestep index ranges [lo, hi): step 1 (the decoder), then monitoring.bound_ranges' ranges of steps 2..T.
  std::vector<std::pair<int64_t, int64_t>> index_ranges() const;
  // The interval's mean log σ² (per dimension) over each index range, importance-weighted like the bound terms.
  std::vector<double> log_variance_by_range() const;
  // The timestep sampler's probability mass on each index range.
  std::vector<double> sampler_probability_by_range() const;

  const Config& config_;
  const MpiContext& mpi_;
  const GaussianDiffusion& diffusion_;
  torch::Device device_;
  std::vector<std::pair<int64_t, int64_t>> ranges_;
  std::shared_ptr<MetricsRegistry> registry_;
  std::unique_ptr<MetricsServer> server_;
  torch::Tensor heldout_;  // the fixed evaluation batch, in [-1, 1]
  MetricsSnapshot current_;
  // Interval sums on the device, indexed by timestep index: Σ L_t, Σ ε-MSE, counts; and Σ L_T, batches. All
  // updated in place on the device, so that a captured CUDA graph of the training step keeps adding to them.
  torch::Tensor vb_sum_, mse_sum_, count_, prior_sum_, prior_batches_, log_variance_sum_;
  const LossSecondMomentSampler* timestep_sampler_ = nullptr;
};

}  // namespace ddpm
