// The choices a diffusion is configured with, each with the names the config uses for it (one list, read by the
// config loader for parsing, checking, printing and `ddpm config --keys`). Torch-free: the config includes it.
#pragma once
#include <utility>

namespace ddpm {

// β schedules (schedule.h).
enum class BetaSchedule { kLinear, kCosine };
inline constexpr std::pair<BetaSchedule, const char*> kBetaScheduleNames[] = {
    {BetaSchedule::kLinear, "linear"}, {BetaSchedule::kCosine, "cosine"}};

// The reverse process' fixed variance Σ_θ = σ_t² I: β_t (large) or β̃_t (small), Ho et al. §3.2.
enum class ModelVariance { kFixedLarge, kFixedSmall };
inline constexpr std::pair<ModelVariance, const char*> kModelVarianceNames[] = {
    {ModelVariance::kFixedLarge, "fixed_large"}, {ModelVariance::kFixedSmall, "fixed_small"}};

// What training minimizes: L_simple (eq. 14, the ε-MSE) or the true bound terms L_{t-1} (eq. 5) in bits/dim.
enum class Objective { kSimple, kKl };
inline constexpr std::pair<Objective, const char*> kObjectiveNames[] = {{Objective::kSimple, "simple"},
                                                                         {Objective::kKl, "kl"}};

}  // namespace ddpm
