// The training objectives per example (diffusion.loss; improved-diffusion's training_losses), from the model's output
// on x_t = q_sample(x_0, t, ε):
//   simple       L_simple = ‖ε − ε_θ‖² averaged over dimensions (Ho et al. eq. 14);
//   kl           the bound term of t in bits/dim: L_{t−1} = KL(q(x_{t−1}|x_t,x_0) ‖ p_θ(x_{t−1}|x_t)), or L_0 at
//                step 1 (eq. 5);
//   rescaled_kl  that term times T, so that its expectation over uniform t is the whole Σ_t L_t;
//   hybrid       L_simple + λ·L_vlb with λ = 0.001 (Nichol & Dhariwal eq. 16). One sampled term stands for
//                L_vlb / T, so the term enters as (T / 1000)·L_t; in it the mean is computed from a detached ε, so
//                that the bound trains only the variance and L_simple alone trains the mean.
#pragma once
#include <torch/torch.h>

#include "trainer/diffusion/diffusion.h"

namespace ddpm {

struct TrainingLosses {
  torch::Tensor loss;  // [B]: what is minimized, per example
  torch::Tensor mse;   // [B]: ‖ε − ε_θ‖² per dimension
  torch::Tensor vb;    // [B]: the bound term of t in bits/dim (undefined under simple), before any scaling
};

// λ = 1 / kHybridScaleDivisor = 0.001 of the hybrid objective, L_hybrid = L_simple + λ·L_vlb: the term is scaled by
// T / 1000, written as the reference writes it (num_timesteps / 1000.0), so that the products agree bit for bit.
inline constexpr double kHybridScaleDivisor = 1000.0;

// `output`: the model's on x_t (ε, or ε and v); `noise`: the ε that made x_t. The bound term is computed without
// clipping x̂_0, as in training everywhere.
TrainingLosses training_losses(const GaussianDiffusion& diffusion, Objective objective, const torch::Tensor& output,
                               const torch::Tensor& x0, const torch::Tensor& x_t, const torch::Tensor& t,
                               const torch::Tensor& noise);

}  // namespace ddpm
