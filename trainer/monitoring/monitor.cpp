#include "trainer/monitoring/monitor.h"

#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>

#include "data/dataset_spec.h"
#include "data/pixels.h"
#include "distributed/console.h"
#include "trainer/monitoring/bind_address.h"
#include "trainer/checkpoint/atomic_file.h"
#include "trainer/config/builders.h"
#include "trainer/diffusion/gaussian.h"

namespace ddpm {
namespace fs = std::filesystem;


TrainingMonitor::TrainingMonitor(const Config& config, const MpiContext& mpi, const GaussianDiffusion& diffusion,
                                 const torch::Device& device)
    : config_(config),
      mpi_(mpi),
      diffusion_(diffusion),
      device_(device),
      ranges_(bound_ranges(diffusion.num_timesteps(), config.monitoring.bound_ranges)),
      registry_(std::make_shared<MetricsRegistry>(fs::path(config.run.dir).filename().string(), mpi.rank(), ranges_)) {
  const int64_t T = diffusion.num_timesteps();
  const auto options = torch::TensorOptions().dtype(torch::kFloat64).device(device);
  vb_sum_ = torch::zeros({T}, options);
  mse_sum_ = torch::zeros({T}, options);
  count_ = torch::zeros({T}, options);
  log_variance_sum_ = torch::zeros({T}, options);
  prior_sum_ = torch::zeros({}, options);
  prior_batches_ = torch::zeros({}, options);
  if (!config.monitoring.enabled) return;

  std::string error;
  BindAddress bind;
  try {
    bind = resolve_bind_address(config.monitoring.bind_address, mpi.hostname());
    const int port = config.monitoring.base_port == 0 ? 0 : static_cast<int>(config.monitoring.base_port) + mpi.local_rank();
    server_ = std::make_unique<MetricsServer>(bind.listen, port, registry_);
  } catch (const std::exception& e) {
    error = mpi.where() + ": " + e.what();
  }
  mpi.throw_if_any_failed(error, "another rank could not serve metrics");
  // Prometheus' file_sd: every rank's host:port in one file, replaced atomically so a reader never sees half.
  const std::vector<std::string> targets = mpi.gather_to_root(bind.target + ":" + std::to_string(server_->port()));
  const bool several_hosts = mpi.local_size() < mpi.world_size();
  if (mpi.rank() == 0 && bind.loopback && several_hosts) {
    print_line("ddpm: warning: monitoring.bind_address " + config.monitoring.bind_address +
               " is a loopback address and the job spans several hosts: a Prometheus on one host cannot scrape the "
               "others; set it to the cluster's subnet (e.g. 10.0.0.0/8) or 0.0.0.0");
  }
  if (mpi.rank() == 0) {
    nlohmann::json file = nlohmann::json::array();
    file.push_back({{"targets", targets}, {"labels", {{"job", "ddpm"}}}});
    write_text_atomically(fs::path(config.run.dir) / "prometheus_targets.json", file.dump(2) + "\n");
  }
  if (config.monitoring.eval_every > 0) {
    const ImageDataset test = load_dataset(dataset_spec(config, DataSplit::kTest));
    const int64_t n = std::min(config.monitoring.eval_images, test.size());
    heldout_ = pixels_to_model_range(test.images.slice(0, 0, n));
  }
}

void TrainingMonitor::observe_batch(const TrainingLosses& losses, const torch::Tensor& output, const torch::Tensor& x0,
                                    const torch::Tensor& x_t, const torch::Tensor& t, const torch::Tensor& weights) {
  torch::NoGradGuard no_grad;
  // The bound terms: the objective's (kl, rescaled_kl and hybrid computed them, hybrid's with the same values from
  // its frozen mean), else from the output.
  const torch::Tensor vb = losses.vb.defined() ? losses.vb.detach()
                                               : diffusion_.vb_terms_bpd(output.detach(), x0, x_t, t, /*clip_denoised=*/false);
  const auto weighted = [&](const torch::Tensor& per_example) {
    const torch::Tensor values = per_example.detach().to(torch::kFloat64);
    return weights.defined() ? values * weights.to(torch::kFloat64) : values;
  };
  vb_sum_.index_add_(0, t, weighted(vb));
  mse_sum_.index_add_(0, t, weighted(losses.mse));
  count_.index_add_(0, t, weights.defined() ? weights.to(torch::kFloat64) : torch::ones({t.size(0)}, vb_sum_.options()));
  if (diffusion_.learns_variance()) {
    const torch::Tensor v = diffusion_.split_model_output(output.detach(), x_t).v;
    log_variance_sum_.index_add_(0, t, weighted(mean_flat(diffusion_.model_log_variance(v, t, x_t))));
  }
  prior_sum_ += diffusion_.prior_bpd(x0).to(torch::kFloat64).mean();
  prior_batches_ += 1;
}

void TrainingMonitor::observe_phases(double data_wait, double forward_backward, double exposed_comm, double optimizer) {
  current_.phase_seconds = {data_wait, forward_backward, exposed_comm, optimizer};
}

void TrainingMonitor::observe_sync(const SyncStats& stats) {
  current_.allreduce_seconds += stats.total_seconds;
  current_.allreduce_bytes += stats.bytes;
}

void TrainingMonitor::observe_checkpoint(int64_t step, double seconds, double bytes) {
  current_.checkpoint_step = step;
  current_.checkpoint_seconds = seconds;
  current_.checkpoint_bytes = bytes;
  ++current_.checkpoints;
  registry_->publish(current_);
}

void TrainingMonitor::observe_nonfinite_step() { ++current_.nonfinite_steps; }

BoundSnapshot TrainingMonitor::interval_bound() const {
  // One host copy per logging interval. Uniform t makes the mean of the sampled L_t over a range, times the
  // range's length, an unbiased estimate of that range's sum.
  const torch::Tensor vb = vb_sum_.cpu(), count = count_.cpu();
  BoundSnapshot b = current_.train_bound;  // keeps the last decoder estimate when no t = 0 was drawn
  b.valid = true;
  if (count[0].item<double>() > 0) b.decoder = vb[0].item<double>() / count[0].item<double>();
  b.ranges.assign(ranges_.size(), 0.0);
  b.vb_sum = 0;
  for (size_t r = 0; r < ranges_.size(); ++r) {
    // Diffusion step s is timestep index s - 1.
    const int64_t lo = ranges_[r].first - 1, hi = ranges_[r].second;  // index range [lo, hi)
    const double n = count.slice(0, lo, hi).sum().item<double>();
    const double sum = vb.slice(0, lo, hi).sum().item<double>();
    b.ranges[r] = n > 0 ? sum / n * static_cast<double>(hi - lo) : (r < current_.train_bound.ranges.size() ? current_.train_bound.ranges[r] : 0.0);
    b.vb_sum += b.ranges[r];
  }
  const double prior_batches = prior_batches_.item<double>();
  if (prior_batches > 0) b.prior = prior_sum_.item<double>() / prior_batches;
  b.total = b.prior + b.vb_sum + b.decoder;
  return b;
}

// Diffusion step s is timestep index s − 1; the decoder's step 1 first, then the bound's ranges.
std::vector<std::pair<int64_t, int64_t>> TrainingMonitor::index_ranges() const {
  std::vector<std::pair<int64_t, int64_t>> out = {{0, 1}};
  for (const auto& [first, last] : ranges_) out.emplace_back(first - 1, last);
  return out;
}

std::vector<double> TrainingMonitor::log_variance_by_range() const {
  const torch::Tensor sum = log_variance_sum_.cpu(), count = count_.cpu();
  std::vector<double> out;
  size_t r = 0;
  for (const auto& [lo, hi] : index_ranges()) {
    const double n = count.slice(0, lo, hi).sum().item<double>();
    const std::vector<double>& last = current_.log_variance_by_range;
    out.push_back(n > 0 ? sum.slice(0, lo, hi).sum().item<double>() / n : (r < last.size() ? last[r] : 0.0));
    ++r;
  }
  return out;
}

std::vector<double> TrainingMonitor::sampler_probability_by_range() const {
  const torch::Tensor p = timestep_sampler_->probabilities().cpu();
  std::vector<double> out;
  for (const auto& [lo, hi] : index_ranges()) out.push_back(p.slice(0, lo, hi).sum().item<double>());
  return out;
}

int64_t TrainingMonitor::timestep_sampler_filled() const {
  if (timestep_sampler_ == nullptr) return -1;
  return (timestep_sampler_->counts() == LossSecondMomentSampler::kHistory).sum().item<int64_t>();
}

void TrainingMonitor::report(const StepReport& report, double param_norm) {
  current_.steps = report.step;
  current_.images = report.step * config_.train.batch_size;
  current_.loss = report.loss;
  current_.grad_norm = report.grad_norm;
  current_.param_norm = param_norm;
  current_.learning_rate = report.lr;
  current_.images_per_second = report.images_per_second / static_cast<double>(mpi_.world_size());
  current_.train_bound = interval_bound();
  if (diffusion_.learns_variance()) current_.log_variance_by_range = log_variance_by_range();
  if (timestep_sampler_ != nullptr) current_.sampler_probability_by_range = sampler_probability_by_range();
  const torch::Tensor mse = mse_sum_.cpu(), count = count_.cpu();
  const int64_t T = diffusion_.num_timesteps();
  double all_sum = 0, all_count = 0;
  for (int64_t q = 0; q < 4; ++q) {
    const int64_t lo = T * q / 4, hi = T * (q + 1) / 4;
    const double n = count.slice(0, lo, hi).sum().item<double>();
    const double s = mse.slice(0, lo, hi).sum().item<double>();
    if (n > 0) current_.eps_mse_by_quartile[static_cast<size_t>(q)] = s / n;
    all_sum += s;
    all_count += n;
  }
  if (all_count > 0) current_.eps_mse = all_sum / all_count;
  const auto memory = device_memory_bytes(device_.is_cuda(), device_.is_cuda() ? device_.index() : 0);
  current_.memory_in_use = memory.first;
  current_.memory_peak = memory.second;
  registry_->publish(current_);
  vb_sum_.zero_();
  mse_sum_.zero_();
  count_.zero_();
  log_variance_sum_.zero_();
  prior_sum_.zero_();
  prior_batches_.zero_();
}

bool TrainingMonitor::wants_eval(int64_t step) const {
  return heldout_.defined() && config_.monitoring.eval_every > 0 && step % config_.monitoring.eval_every == 0;
}

void TrainingMonitor::evaluate(int64_t step, UNet& model) {
  const BoundReport report = evaluate_bound(model, diffusion_, heldout_, config_.train.batch_size, /*clip_denoised=*/true,
                                            config_.run.seed, mpi_, device_,
                                            "the bound evaluation of step " + std::to_string(step));
  BoundSnapshot b;
  b.valid = true;
  b.prior = report.prior_bpd;
  b.decoder = report.decoder_bpd;
  b.total = report.total_bpd;
  for (const auto& [first, last] : ranges_) {
    double sum = 0;
    for (int64_t s = first; s <= last; ++s) sum += report.per_t_bpd[static_cast<size_t>(s - 1)];
    b.ranges.push_back(sum);
    b.vb_sum += sum;
  }
  current_.eval_bound = b;
  current_.eval_step = step;
  registry_->publish(current_);
  if (mpi_.rank() == 0) {
    nlohmann::json line;
    line["step"] = step;
    line["images"] = report.images;
    line["total_bpd"] = b.total;
    line["prior_bpd"] = b.prior;
    line["decoder_bpd"] = b.decoder;
    line["vb_terms_sum_bpd"] = b.vb_sum;
    line["range_bpd"] = b.ranges;
    line["per_t_bpd"] = report.per_t_bpd;
    std::ofstream out(fs::path(config_.run.dir) / "bound_eval.jsonl", std::ios::app);
    out << line.dump() << "\n";
  }
}

}  // namespace ddpm
