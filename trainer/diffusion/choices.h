// The choices a diffusion is configured with, each with the names the config uses for it (one list, read by the
// config loader for parsing, checking, printing and `ddpm config --keys`). Torch-free: the config includes it.
#pragma once
#include <cstdint>
#include <utility>

namespace ddpm {

// β schedules (schedule.h).
enum class BetaSchedule { kLinear, kCosine };
inline constexpr std::pair<BetaSchedule, const char*> kBetaScheduleNames[] = {
    {BetaSchedule::kLinear, "linear"}, {BetaSchedule::kCosine, "cosine"}};

// The reverse process' variance Σ_θ = σ_t² I: fixed to β_t (large) or β̃_t (small), Ho et al. §3.2; or predicted by
// the model (Nichol & Dhariwal 2021, §3.1): log σ² = v (learned), or interpolated between the two fixed ones,
// log σ² = frac·log β_t + (1 − frac)·log β̃_t with frac = (v + 1)/2 (learned_range, their eq. 15).
enum class ModelVariance { kFixedLarge, kFixedSmall, kLearned, kLearnedRange };
inline constexpr std::pair<ModelVariance, const char*> kModelVarianceNames[] = {
    {ModelVariance::kFixedLarge, "fixed_large"},
    {ModelVariance::kFixedSmall, "fixed_small"},
    {ModelVariance::kLearned, "learned"},
    {ModelVariance::kLearnedRange, "learned_range"}};
// Whether the model predicts its variance: its output then has 2C channels, ε and then v.
constexpr bool learns_variance(ModelVariance variance) {
  return variance == ModelVariance::kLearned || variance == ModelVariance::kLearnedRange;
}
// The model's output channels for images of `channels` channels: C, or 2C with a learned variance.
constexpr int64_t model_output_channels(ModelVariance variance, int64_t channels) {
  return learns_variance(variance) ? 2 * channels : channels;
}

// What training minimizes, per example (losses.h): L_simple (Ho et al. eq. 14, the ε-MSE); the true bound term L_t
// in bits/dim (eq. 5); hybrid, L_simple + λ·L_vlb with the mean frozen in the bound term (Nichol & Dhariwal eq. 16,
// λ = 0.001); rescaled_kl, the bound term times T (the sum of all T terms in expectation).
enum class Objective { kSimple, kKl, kHybrid, kRescaledKl };
inline constexpr std::pair<Objective, const char*> kObjectiveNames[] = {{Objective::kSimple, "simple"},
                                                                         {Objective::kKl, "kl"},
                                                                         {Objective::kHybrid, "hybrid"},
                                                                         {Objective::kRescaledKl, "rescaled_kl"}};

// How training draws t (timestep_sampler.h): uniformly (Algorithm 1), or by importance, p_t ∝ √E[L_t²] over each
// t's last 10 losses (Nichol & Dhariwal §3.3, improved-diffusion's LossSecondMomentResampler).
enum class TimestepSamplerKind { kUniform, kLossSecondMoment };
inline constexpr std::pair<TimestepSamplerKind, const char*> kTimestepSamplerNames[] = {
    {TimestepSamplerKind::kUniform, "uniform"}, {TimestepSamplerKind::kLossSecondMoment, "loss_second_moment"}};

}  // namespace ddpm
