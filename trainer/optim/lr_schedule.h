// The learning rate of each step: linear warmup to the base rate, then constant (DDPM: 2e-4 after 5000 steps).
#pragma once
#include <algorithm>
#include <cstdint>

namespace ddpm {

struct WarmupSchedule {
  double base_lr = 0.0;
  int64_t warmup_steps = 0;  // 0: the base rate from the first step

  // The rate of step `step`, counted from 1 (the first update uses base_lr / warmup_steps).
  double at(int64_t step) const {
    if (warmup_steps <= 0) return base_lr;
    return base_lr * std::min(1.0, static_cast<double>(step) / static_cast<double>(warmup_steps));
  }
};

}  // namespace ddpm
