// Variance schedules β_1..β_T of the forward process, computed in float64.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "trainer/diffusion/choices.h"

namespace ddpm {

// Parses "linear" or "cosine"; throws std::invalid_argument naming the accepted values.
BetaSchedule parse_beta_schedule(const std::string& name);

// β_1..β_T (index 0 holds β_1).
// linear (Ho et al. 2020, §4): linspace(s·1e-4, s·0.02, T) with s = 1000/T, so T = 1000 gives the paper's.
// cosine (Nichol & Dhariwal 2021, eq. 17): ᾱ(t) = cos²(((t/T)+0.008)/1.008 · π/2),
//   β_i = min(1 - ᾱ(i/T)/ᾱ((i-1)/T), 0.999).
std::vector<double> make_beta_schedule(BetaSchedule schedule, int64_t num_timesteps);

}  // namespace ddpm
