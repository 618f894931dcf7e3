#include "trainer/diffusion/schedule.h"

#include <cmath>
#include <stdexcept>

namespace ddpm {

BetaSchedule parse_beta_schedule(const std::string& name) {
  for (const auto& [schedule, text] : kBetaScheduleNames) {
    if (name == text) return schedule;
  }
  throw std::invalid_argument("unknown beta schedule '" + name + "' (expected linear or cosine)");
}

namespace {

std::vector<double> linear_betas(int64_t num_timesteps) {
  const double scale = 1000.0 / static_cast<double>(num_timesteps);
  const double beta_start = scale * 1e-4;
  const double beta_end = scale * 0.02;
  std::vector<double> betas(static_cast<size_t>(num_timesteps));
  const double denominator = num_timesteps > 1 ? static_cast<double>(num_timesteps - 1) : 1.0;
  for (int64_t i = 0; i < num_timesteps; ++i) {
    betas[static_cast<size_t>(i)] = beta_start + (beta_end - beta_start) * static_cast<double>(i) / denominator;
  }
  return betas;
}

std::vector<double> cosine_betas(int64_t num_timesteps) {
  const double pi = std::acos(-1.0);
  const auto alpha_bar = [&](double t) {
    const double c = std::cos((t + 0.008) / 1.008 * pi / 2.0);
    return c * c;
  };
  const double steps = static_cast<double>(num_timesteps);
  std::vector<double> betas(static_cast<size_t>(num_timesteps));
  for (int64_t i = 0; i < num_timesteps; ++i) {
    const double t1 = static_cast<double>(i) / steps;
    const double t2 = static_cast<double>(i + 1) / steps;
    betas[static_cast<size_t>(i)] = std::min(1.0 - alpha_bar(t2) / alpha_bar(t1), 0.999);
  }
  return betas;
}

}  // namespace

std::vector<double> make_beta_schedule(BetaSchedule schedule, int64_t num_timesteps) {
  if (num_timesteps < 2) {
    throw std::invalid_argument("the number of diffusion steps must be at least 2, got " +
                                std::to_string(num_timesteps));
  }
  return schedule == BetaSchedule::kLinear ? linear_betas(num_timesteps) : cosine_betas(num_timesteps);
}

}  // namespace ddpm
