// Gaussian diffusion of Ho et al. 2020 ("Denoising Diffusion Probabilistic Models"): the forward process,
// its posterior, the reverse process parameterized by an ε prediction, and the full variational bound.
//
// Indexing: a timestep index t in code runs over 0..T-1 and stands for diffusion step t+1 of the paper,
// as in the reference implementations. So index 0 is step 1, whose term is the decoder L_0, and index T-1
// is step T. Every table below is float64; values are gathered in float64 and cast to the tensor's dtype.
#pragma once
#include <torch/torch.h>

#include <functional>
#include <optional>
#include <vector>

#include "trainer/diffusion/schedule.h"
#include <string>

namespace ddpm {

// Σ_θ(x_t, t) = σ_t² I (§3.2): fixed_large σ_t² = β_t, fixed_small σ_t² = β̃_t, or learned (ModelVariance, choices.h).
std::string to_string(ModelVariance variance);

// The model's output for (x_t, t): ε, or ε and v stacked on the channels (a learned variance); t holds the model's
// time inputs (int64, one per example).
using ModelFn = std::function<torch::Tensor(const torch::Tensor& x_t, const torch::Tensor& t)>;

struct DiagonalGaussian {
  torch::Tensor mean;
  torch::Tensor variance;
  torch::Tensor log_variance;
};

// The model's output split on the channels: ε_θ, and v (a learned variance; undefined otherwise).
struct ModelOutput {
  torch::Tensor eps;
  torch::Tensor v;
};

struct ReverseStep {
  torch::Tensor mean;          // μ_θ(x_t, t), eq. 11
  torch::Tensor variance;      // σ_t²
  torch::Tensor log_variance;  // log σ_t²
  torch::Tensor pred_x0;       // x̂_0 = (x_t - √(1-ᾱ_t) ε_θ) / √ᾱ_t, optionally clipped to [-1, 1]
  torch::Tensor eps;           // ε_θ
};

// The terms of the full bound for a batch, in bits/dim (Ho et al. 2020, eq. 5).
struct BoundTerms {
  torch::Tensor total_bpd;   // [B]: L_T + Σ_{t≥2} L_{t-1} + L_0
  torch::Tensor prior_bpd;   // [B]: L_T = KL(q(x_T|x_0) ‖ N(0, I))
  torch::Tensor vb;          // [B, T]: column 0 is L_0, column t ≥ 1 is L_t (the KL at step t+1)
  torch::Tensor xstart_mse;  // [B, T]: mean ‖x̂_0 - x_0‖² per dimension
  torch::Tensor mse;         // [B, T]: mean ‖ε_θ - ε‖² per dimension
};

class GaussianDiffusion {
 public:
  // timestep_map: the model's time input for each index (empty: the index itself); original_num_timesteps: the T
  // of the process the model was trained on (0: this one's). Both differ from the defaults only when respaced
  // (respace.h).
  GaussianDiffusion(const std::vector<double>& betas, ModelVariance model_variance,
                    const std::vector<int64_t>& timestep_map = {}, int64_t original_num_timesteps = 0);

  int64_t num_timesteps() const { return num_timesteps_; }
  int64_t original_num_timesteps() const { return original_num_timesteps_; }
  bool respaced() const { return original_num_timesteps_ != num_timesteps_; }
  // int64 [T]: the timestep the model was trained with for each index of this process.
  const torch::Tensor& timestep_map() const { return timestep_map_; }
  // t mapped through timestep_map, on t's device: what the model is called with.
  torch::Tensor model_timesteps(const torch::Tensor& t) const;
  ModelVariance model_variance() const { return model_variance_; }
  bool learns_variance() const { return ddpm::learns_variance(model_variance_); }

  // A copy whose tables live on `device` (still float64), so gathers need no host-device copy.
  GaussianDiffusion to(const torch::Device& device) const;

  // float64 tables of length T, indexed by timestep index.
  const torch::Tensor& betas() const { return betas_; }
  const torch::Tensor& alphas_cumprod() const { return alphas_cumprod_; }
  const torch::Tensor& alphas_cumprod_prev() const { return alphas_cumprod_prev_; }
  const torch::Tensor& posterior_variance() const { return posterior_variance_; }
  const torch::Tensor& posterior_log_variance_clipped() const { return posterior_log_variance_clipped_; }
  const torch::Tensor& posterior_mean_coef1() const { return posterior_mean_coef1_; }
  const torch::Tensor& posterior_mean_coef2() const { return posterior_mean_coef2_; }
  const torch::Tensor& log_betas() const { return log_betas_; }
  // The fixed σ_t² and log σ_t²; NaN with a learned variance (there is no table to read then).
  const torch::Tensor& model_variance_table() const { return model_variance_table_; }
  const torch::Tensor& model_log_variance_table() const { return model_log_variance_table_; }

  // q(x_t | x_0) = N(√ᾱ_t x_0, (1 - ᾱ_t) I), eq. 4.
  DiagonalGaussian q_mean_variance(const torch::Tensor& x0, const torch::Tensor& t) const;
  // x_t = √ᾱ_t x_0 + √(1-ᾱ_t) ε, eq. 4 reparameterized (Algorithm 1).
  torch::Tensor q_sample(const torch::Tensor& x0, const torch::Tensor& t, const torch::Tensor& noise) const;
  // q(x_{t-1} | x_t, x_0) = N(μ̃_t(x_t, x_0), β̃_t I), eqs. 6-7. The log variance is clipped at step 1.
  DiagonalGaussian q_posterior(const torch::Tensor& x0, const torch::Tensor& x_t, const torch::Tensor& t) const;
  // x_0 = (x_t - √(1-ᾱ_t) ε) / √ᾱ_t, eq. 4 solved for x_0.
  torch::Tensor predict_x0_from_eps(const torch::Tensor& x_t, const torch::Tensor& t, const torch::Tensor& eps) const;
  // The model's output split into ε and v; throws naming the shapes when it has neither C nor (learned) 2C channels.
  ModelOutput split_model_output(const torch::Tensor& output, const torch::Tensor& x_t) const;
  // log σ_t² of p_θ(x_{t-1} | x_t), shaped like `like`: the fixed table; v (learned); or, learned_range
  // (Nichol & Dhariwal eq. 15), frac·log β_t + (1 − frac)·log β̃_t with frac = (v + 1)/2 and log β̃_t clipped at
  // step 1 (so at index 0 frac = 1 gives log β_1, not fixed_large's log β̃_2). A respaced process interpolates
  // between its own β and β̃, as improved-diffusion's SpacedDiffusion does.
  torch::Tensor model_log_variance(const torch::Tensor& v, const torch::Tensor& t, const torch::Tensor& like) const;
  // p_θ(x_{t-1} | x_t) = N(μ_θ, σ_t² I) with μ_θ = μ̃_t(x_t, x̂_0(ε_θ)), which is eq. 11 (before clipping x̂_0).
  // `output`: the model's (ε, or ε and v).
  ReverseStep p_mean_variance(const torch::Tensor& output, const torch::Tensor& x_t, const torch::Tensor& t,
                              bool clip_denoised) const;
  // One ancestral step x_{t-1} = μ_θ + σ_t z (Algorithm 2); no noise at step 1 (index 0).
  torch::Tensor p_sample(const torch::Tensor& output, const torch::Tensor& x_t, const torch::Tensor& t,
                         const torch::Tensor& noise, bool clip_denoised) const;

  // DDIM's coefficients for a given η (Song et al. 2021, eq. 12 and eq. 16), float64 tables of length T:
  //   σ_t(η) = η √((1 − ᾱ_{t−1}) / (1 − ᾱ_t)) √(1 − ᾱ_t / ᾱ_{t−1}),   and   √(1 − ᾱ_{t−1} − σ_t²).
  // η = 0 is the deterministic DDIM; η = 1 makes σ_t² = β̃_t, the ancestral step with fixed_small variance.
  struct DdimTables {
    double eta = 0.0;
    torch::Tensor sigma;           // σ_t(η)
    torch::Tensor x0_coef;         // √ᾱ_{t−1}
    torch::Tensor direction_coef;  // √(1 − ᾱ_{t−1} − σ_t²)
  };
  DdimTables ddim_tables(double eta) const;
  // One DDIM step, eq. 12: x_{t−1} = √ᾱ_{t−1} x̂_0 + √(1 − ᾱ_{t−1} − σ_t²) ε̂ + σ_t z (no noise at index 0). With
  // clip_denoised, x̂_0 is clipped to [-1, 1] and ε̂ is re-derived from the clipped x̂_0, as improved-diffusion
  // (and guided-diffusion) do; diffusers' DDIMScheduler does so with use_clipped_model_output=True. A learned
  // variance is ignored: DDIM's σ_t(η) replaces it (as in the reference).
  torch::Tensor ddim_sample(const DdimTables& tables, const torch::Tensor& output, const torch::Tensor& x_t,
                            const torch::Tensor& t, const torch::Tensor& noise, bool clip_denoised) const;
  // ε = (x_t/√ᾱ_t − x_0) / √(1/ᾱ_t − 1), eq. 4 solved for ε.
  torch::Tensor predict_eps_from_x0(const torch::Tensor& x_t, const torch::Tensor& t, const torch::Tensor& x0) const;

  // L_T in bits/dim, per example.
  torch::Tensor prior_bpd(const torch::Tensor& x0) const;
  // L_{t-1} = KL(q(x_{t-1}|x_t,x_0) ‖ p_θ(x_{t-1}|x_t)) for index t ≥ 1 and L_0 = -log p_θ(x_0|x_1) for index 0,
  // in bits/dim, per example. `output`: the model's.
  torch::Tensor vb_terms_bpd(const torch::Tensor& output, const torch::Tensor& x0, const torch::Tensor& x_t,
                             const torch::Tensor& t, bool clip_denoised) const;
  // The same from a reverse step already computed (so a caller holding one does not redo it).
  torch::Tensor vb_terms_bpd(const ReverseStep& p, const torch::Tensor& x0, const torch::Tensor& x_t,
                             const torch::Tensor& t) const;
  // L_simple = ‖ε - ε_θ‖² averaged over dimensions (eq. 14), per example.
  static torch::Tensor simple_loss(const torch::Tensor& eps_pred, const torch::Tensor& noise);

  // Every term of the bound for x0 with fresh noise per step, as the reference codes' bpd loop.
  BoundTerms calc_bpd_loop(const ModelFn& model, const torch::Tensor& x0, bool clip_denoised,
                           std::optional<at::Generator> generator = std::nullopt) const;

  // Gathers table[t] (float64) and casts it to like's dtype, shaped [B, 1, ..., 1] to broadcast against like.
  static torch::Tensor extract(const torch::Tensor& table, const torch::Tensor& t, const torch::Tensor& like);

 private:
  GaussianDiffusion() = default;

  int64_t num_timesteps_ = 0;
  int64_t original_num_timesteps_ = 0;
  torch::Tensor timestep_map_;
  ModelVariance model_variance_ = ModelVariance::kFixedLarge;
  torch::Tensor betas_;
  torch::Tensor alphas_cumprod_;
  torch::Tensor alphas_cumprod_prev_;
  torch::Tensor sqrt_alphas_cumprod_;
  torch::Tensor sqrt_one_minus_alphas_cumprod_;
  torch::Tensor log_one_minus_alphas_cumprod_;
  torch::Tensor sqrt_recip_alphas_cumprod_;
  torch::Tensor sqrt_recipm1_alphas_cumprod_;
  torch::Tensor posterior_variance_;
  torch::Tensor posterior_log_variance_clipped_;
  torch::Tensor posterior_mean_coef1_;
  torch::Tensor posterior_mean_coef2_;
  torch::Tensor log_betas_;
  torch::Tensor model_variance_table_;
  torch::Tensor model_log_variance_table_;
};

}  // namespace ddpm
