#include "trainer/loop/train_log.h"

#include <filesystem>

#include "trainer/config/builders.h"

namespace ddpm {
namespace fs = std::filesystem;

TrainingLog::TrainingLog(const Config& config, const MpiContext& mpi, Communicator& comm, Watchdog& watchdog,
                         TrainingMonitor& monitor, ProgressMode mode)
    : config_(config),
      mpi_(mpi),
      comm_(comm),
      watchdog_(watchdog),
      monitor_(monitor),
      lr_(lr_schedule(config)),
      throughput_(config.train.batch_size * mpi.world_size()) {
  if (mpi.rank() == 0) {
    progress_ = std::make_unique<Progress>(mode, config.train.steps, (fs::path(config.run.dir) / "train_log.jsonl").string());
  }
}

void TrainingLog::record(int64_t step, const torch::Tensor& loss, const torch::Tensor& grad_norm, const SyncStats& sync,
                         int64_t skipped_steps, const std::vector<torch::Tensor>& parameters) {
  if (!loss_sum_.defined()) loss_sum_ = torch::zeros({}, loss.options().dtype(torch::kFloat64));
  loss_sum_ += loss.to(torch::kFloat64);
  ++losses_;
  const int64_t total = config_.train.steps;
  if (step % config_.train.log_every != 0 && step != total) return;
  // Reading the loss waits for the device, hence for any collective still queued: bounded too.
  const Watchdog::Scope armed(watchdog_, "the loss average of step " + std::to_string(step));
  torch::Tensor mean_loss = (loss_sum_ / static_cast<double>(losses_)).to(torch::kFloat32).reshape({1});
  if (mpi_.world_size() > 1) {
    comm_.all_reduce_sum(mean_loss);
    mean_loss.div_(mpi_.world_size());
  }
  StepReport report;
  report.step = step;
  report.loss = mean_loss.item<double>();
  report.grad_norm = grad_norm.item<double>();
  report.lr = lr_.at(step);
  report.images_per_second = throughput_.mark(step);
  report.eta_seconds = throughput_.eta_seconds(step, total);
  report.comm_exposed_seconds = sync.exposed_seconds;
  report.comm_total_seconds = sync.total_seconds;
  report.skipped_steps = skipped_steps;
  report.timestep_sampler_filled = monitor_.timestep_sampler_filled();
  if (progress_) progress_->report(report);
  monitor_.report(report, parameter_norm(parameters));
  loss_sum_.zero_();
  losses_ = 0;
}

void TrainingLog::finish() {
  if (progress_) progress_->finish();
}

double parameter_norm(const std::vector<torch::Tensor>& parameters) {
  torch::NoGradGuard no_grad;
  std::vector<torch::Tensor> params;
  for (const torch::Tensor& p : parameters) params.push_back(p.detach());
  return torch::stack(at::_foreach_norm(params, 2.0)).norm().item<double>();
}

}  // namespace ddpm
