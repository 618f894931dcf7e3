#include "trainer/eval/inference.h"

#include <nlohmann/json.hpp>

#include <filesystem>
#include <optional>
#include <iostream>
#include <stdexcept>

#include "distributed/console.h"
#include "distributed/stop_signal.h"
#include "trainer/config/builders.h"
#include "trainer/checkpoint/checkpoint.h"
#include "trainer/checkpoint/train_state.h"
#include "trainer/model/unet_inference.h"
#include "trainer/optim/ema.h"

namespace ddpm {
namespace fs = std::filesystem;

std::string resolve_checkpoint(const Config& config, const std::string& requested) {
  if (!requested.empty() || !fs::is_directory(config.run.dir)) return requested;
  std::vector<std::string> warnings;
  fs::path found;
  const std::optional<Checkpoint> newest = load_newest_valid_checkpoint(config.run.dir, &warnings, &found);
  for (const std::string& w : warnings) print_line("ddpm: warning: " + w);
  return newest ? found.string() : "";
}

LoadedModel load_model(const Config& config, const std::string& checkpoint_path, bool allow_fresh,
                       const torch::Device& device) {
  LoadedModel loaded;
  torch::manual_seed(config.run.seed);
  loaded.model = UNet(unet_options(config));
  if (checkpoint_path.empty()) {
    if (!allow_fresh) {
      throw std::runtime_error("no valid checkpoint in run directory " + config.run.dir +
                               " (train first, or pass --checkpoint PATH)");
    }
    loaded.source = "a freshly initialized model (no valid checkpoint in " + config.run.dir + ")";
    loaded.model->to(device);
    if (config.train.channels_last) use_channels_last(loaded.model);
    return loaded;
  }
  const Checkpoint checkpoint = read_checkpoint(checkpoint_path);
  try {
    require_model_shape(checkpoint, model_shape_signature(config));
    ExponentialMovingAverage ema(*loaded.model, config.train.ema_rates);
    ema.load_state(checkpoint.tensors);
    ema.copy_to(*loaded.model, 0);
    loaded.source = ema.prefix(0) + " weights of " + checkpoint_path + " (step " + std::to_string(checkpoint.step) + ")";
  } catch (const std::exception& e) {
    throw std::runtime_error("checkpoint " + checkpoint_path + ": " + e.what());
  }
  loaded.step = checkpoint.step;
  loaded.model->to(device);
  if (config.train.channels_last) use_channels_last(loaded.model);
  return loaded;
}

namespace {

// Sums over one rank's images, in the layout of evaluate_bound's `sums`.
void add_bound_sums(const torch::Tensor& mine, const ModelFn& model_fn, const GaussianDiffusion& diffusion,
                    int64_t batch_size, bool clip_denoised, at::Generator& generator, const torch::Device& device,
                    std::vector<double>& sums) {
  const int64_t T = diffusion.num_timesteps();
  for (int64_t start = 0; start < mine.size(0); start += batch_size) {
    const torch::Tensor x0 = mine.slice(0, start, std::min(start + batch_size, mine.size(0))).to(device);
    // On CPU the seeded generator makes the report reproducible; on CUDA the device's default generator.
    const BoundTerms terms = diffusion.calc_bpd_loop(
        model_fn, x0, clip_denoised, device.is_cpu() ? std::optional<at::Generator>(generator) : std::nullopt);
    const torch::Tensor vb = terms.vb.to(torch::kFloat64).cpu();
    const torch::Tensor mse = terms.mse.to(torch::kFloat64).cpu();
    sums[0] += terms.total_bpd.to(torch::kFloat64).sum().item<double>();
    sums[1] += terms.prior_bpd.to(torch::kFloat64).sum().item<double>();
    sums[2] += vb.select(1, 0).sum().item<double>();
    sums[3] += vb.slice(1, 1).sum().item<double>();
    sums[4] += mse.mean(1).sum().item<double>();
    sums[5] += static_cast<double>(x0.size(0));
    const torch::Tensor vb_t = vb.sum(0), mse_t = mse.sum(0);
    for (int64_t t = 0; t < T; ++t) {
      sums[static_cast<size_t>(6 + t)] += vb_t[t].item<double>();
      sums[static_cast<size_t>(6 + T + t)] += mse_t[t].item<double>();
    }
  }
}

}  // namespace

BoundReport evaluate_bound(UNet& model, const GaussianDiffusion& diffusion, const torch::Tensor& images,
                           int64_t batch_size, bool clip_denoised, uint64_t seed, const MpiContext& mpi,
                           const torch::Device& device, const std::string& what,
                           const std::function<void(double images_done)>& progress) {
  torch::NoGradGuard no_grad;
  model->eval();
  const int64_t T = diffusion.num_timesteps();
  const torch::Tensor mine = images.slice(0, mpi.rank(), images.size(0), mpi.world_size());
  at::Generator generator = at::make_generator<at::CPUGeneratorImpl>(seed * 1000003ULL + static_cast<uint64_t>(mpi.rank()));
  // [total, prior, decoder, vb sum, mse, count, per-t bpd (T), per-t mse (T), ranks stopped].
  std::vector<double> sums(static_cast<size_t>(7 + 2 * T), 0.0);
  double images_done = 0.0;
  // On a CPU the model's inference form (unet_inference.h), as the sampler: the same ε up to float round-off, T
  // model calls per batch in a fraction of the operator calls. The weights do not change during the evaluation.
  std::optional<UNetInference> inference;
  if (UNetInference::supported(device)) inference.emplace(model);
  const ModelFn model_fn = [&](const torch::Tensor& x_t, const torch::Tensor& t) {
    StopSignal::throw_if_requested(what);  // T model calls per batch take minutes: a stop waits for one at most
    torch::Tensor output = inference ? inference->forward(x_t, t) : model->forward(x_t, t);
    images_done += static_cast<double>(x_t.size(0)) / static_cast<double>(T);
    if (progress) progress(images_done);
    return output;
  };
  try {
    add_bound_sums(mine, model_fn, diffusion, batch_size, clip_denoised, generator, device, sums);
  } catch (const StopRequested&) {
    sums.back() = 1.0;  // and still joins the reduction, so that every rank leaves here together
  }
  check_mpi(MPI_Allreduce(MPI_IN_PLACE, sums.data(), static_cast<int>(sums.size()), MPI_DOUBLE, MPI_SUM, mpi.comm()),
            "MPI_Allreduce of the bound sums");
  if (sums.back() > 0) throw StopRequested(what);
  BoundReport report;
  const double n = sums[5];
  if (n == 0) throw std::runtime_error("no images to evaluate");
  report.images = static_cast<int64_t>(n);
  report.total_bpd = sums[0] / n;
  report.prior_bpd = sums[1] / n;
  report.decoder_bpd = sums[2] / n;
  report.vb_sum_bpd = sums[3] / n;
  report.mse = sums[4] / n;
  for (int64_t t = 0; t < T; ++t) {
    report.per_t_bpd.push_back(sums[static_cast<size_t>(6 + t)] / n);
    report.per_t_mse.push_back(sums[static_cast<size_t>(6 + T + t)] / n);
  }
  return report;
}

std::string bound_report_json(const BoundReport& report, const std::string& model_source,
                              const GaussianDiffusion& diffusion, const std::string& steps) {
  nlohmann::json out;
  out["model"] = model_source;
  out["images"] = report.images;
  out["timesteps"] = diffusion.num_timesteps();  // the terms of the bound: T, or the respaced count
  out["trained_timesteps"] = diffusion.original_num_timesteps();
  out["steps"] = steps.empty() ? "all" : steps;
  if (diffusion.respaced()) {
    const torch::Tensor map = diffusion.timestep_map().cpu();
    out["kept_timesteps"] = std::vector<int64_t>(map.data_ptr<int64_t>(), map.data_ptr<int64_t>() + map.numel());
  }
  out["total_bpd"] = report.total_bpd;
  out["prior_bpd"] = report.prior_bpd;              // L_T
  out["decoder_bpd"] = report.decoder_bpd;          // L_0
  out["vb_terms_sum_bpd"] = report.vb_sum_bpd;      // Σ_{t=2..T} L_{t-1}
  out["eps_mse"] = report.mse;
  out["per_t_bpd"] = report.per_t_bpd;              // index 0 is L_0, index i ≥ 1 is L_i (step i+1)
  out["per_t_eps_mse"] = report.per_t_mse;
  return out.dump(2) + "\n";
}

}  // namespace ddpm
