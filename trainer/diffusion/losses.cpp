#include "trainer/diffusion/losses.h"

namespace ddpm {

TrainingLosses training_losses(const GaussianDiffusion& diffusion, Objective objective, const torch::Tensor& output,
                               const torch::Tensor& x0, const torch::Tensor& x_t, const torch::Tensor& t,
                               const torch::Tensor& noise) {
  const ModelOutput out = diffusion.split_model_output(output, x_t);
  TrainingLosses losses;
  losses.mse = GaussianDiffusion::simple_loss(out.eps, noise);  // eq. 14
  const double T = static_cast<double>(diffusion.num_timesteps());
  switch (objective) {
    case Objective::kSimple:
      losses.loss = losses.mse;
      break;
    case Objective::kKl:
      losses.vb = diffusion.vb_terms_bpd(output, x0, x_t, t, /*clip_denoised=*/false);  // eq. 5
      losses.loss = losses.vb;
      break;
    case Objective::kRescaledKl:
      losses.vb = diffusion.vb_terms_bpd(output, x0, x_t, t, /*clip_denoised=*/false);
      losses.loss = losses.vb * T;
      break;
    case Objective::kHybrid: {
      // The bound sees a frozen mean: gradients of L_vlb reach v only (Nichol & Dhariwal §3.1).
      const torch::Tensor frozen = out.v.defined() ? torch::cat({out.eps.detach(), out.v}, 1) : output.detach();
      losses.vb = diffusion.vb_terms_bpd(frozen, x0, x_t, t, /*clip_denoised=*/false);
      losses.loss = losses.mse + losses.vb * (T / kHybridScaleDivisor);  // eq. 16: λ·L_vlb, L_vlb ≈ T·L_t
      break;
    }
  }
  return losses;
}

}  // namespace ddpm
