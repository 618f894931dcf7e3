#include "trainer/loop/step_health.h"

#include <stdexcept>

namespace ddpm {

bool StepHealth::account(const StepFlags& flags) {
  if (!flags.nonfinite) {
    consecutive_skips_ = 0;
    return false;
  }
  ++skipped_steps_;
  ++consecutive_skips_;
  return true;
}

void StepHealth::throw_if_exhausted(int64_t step, const std::string& run_dir) const {
  if (consecutive_skips_ < max_consecutive_skips_) return;
  throw std::runtime_error(std::to_string(consecutive_skips_) + " consecutive steps had a non-finite loss or gradient " +
                           "(train.max_consecutive_skips; last: step " + std::to_string(step) +
                           "); stopping with the last good checkpoint kept in " + run_dir);
}

}  // namespace ddpm
