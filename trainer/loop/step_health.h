// The host's bookkeeping of skipped steps: a step whose loss or gradient was non-finite on some rank is skipped
// by every rank (on the device); this counts them and stops the run after too many in a row.
#pragma once
#include <cstdint>
#include <string>

#include "trainer/loop/step_flags.h"

namespace ddpm {

class StepHealth {
 public:
  explicit StepHealth(int64_t max_consecutive_skips) : max_consecutive_skips_(max_consecutive_skips) {}

  // Accounts one step's agreed flags, in step order; true when that step was skipped.
  bool account(const StepFlags& flags);
  // Throws once max_consecutive_skips steps in a row were skipped, the last being `step`; the message says the
  // last good checkpoint is kept in `run_dir`.
  void throw_if_exhausted(int64_t step, const std::string& run_dir) const;

  int64_t skipped_steps() const { return skipped_steps_; }

 private:
  const int64_t max_consecutive_skips_;
  int64_t consecutive_skips_ = 0;
  int64_t skipped_steps_ = 0;
};

}  // namespace ddpm
