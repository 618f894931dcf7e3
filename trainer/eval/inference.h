// Using a trained (or fresh) model: which weights to use, and the full variational bound on held-out images in
// bits/dim (sampling is sampler.h).
#pragma once
#include <torch/torch.h>

#include <functional>
#include <string>
#include <vector>

#include "distributed/mpi_context.h"
#include "trainer/config/config.h"
#include "trainer/diffusion/diffusion.h"
#include "trainer/eval/sampler.h"
#include "trainer/model/unet.h"

namespace ddpm {

struct LoadedModel {
  UNet model{nullptr};
  std::string source;  // "EMA 0.9999 of <checkpoint> (step N)" or "a freshly initialized model"
  int64_t step = 0;
};

// `requested` when given, else the newest checkpoint of run.dir that verifies (corrupt newer ones are reported
// on stderr), else "" (none). Under MPI let one rank resolve and broadcast, so all ranks use one file.
std::string resolve_checkpoint(const Config& config, const std::string& requested);

// Loads the first EMA rate's weights of `checkpoint_path`; with an empty path, a freshly initialized model
// (seeded by run.seed) when allow_fresh, else an error saying there is nothing to load.
LoadedModel load_model(const Config& config, const std::string& checkpoint_path, bool allow_fresh,
                       const torch::Device& device);

struct BoundReport {
  int64_t images = 0;
  double total_bpd = 0, prior_bpd = 0, decoder_bpd = 0, vb_sum_bpd = 0, mse = 0;
  std::vector<double> per_t_bpd;  // mean L at each timestep index (index 0: L_0)
  std::vector<double> per_t_mse;
};

// The full bound over `images` (float in [-1, 1]) split across ranks (rank r takes images r, r+W, ...),
// averaged over all of them on every rank. Collective. A stop request (StopSignal) on any rank ends it within one
// model call of that rank: every rank then throws StopRequested(what), together.
BoundReport evaluate_bound(UNet& model, const GaussianDiffusion& diffusion, const torch::Tensor& images,
                           int64_t batch_size, bool clip_denoised, uint64_t seed, const MpiContext& mpi,
                           const torch::Device& device, const std::string& what = "the bound evaluation",
                           const std::function<void(double images_done)>& progress = {});

// `diffusion`: the process evaluated (respaced or not); `steps`: its respacing spec ("" for all T).
std::string bound_report_json(const BoundReport& report, const std::string& model_source,
                              const GaussianDiffusion& diffusion, const std::string& steps);

}  // namespace ddpm
