// SIGTERM / SIGINT (what Slurm and a user's Ctrl-C send) become a request to stop: the trainer finishes the
// step it is in, commits a checkpoint and exits 0. A second signal ends the process at once.
#pragma once

namespace ddpm {

class StopSignal {
 public:
  // Installs the handlers; the destructor restores the previous ones.
  StopSignal();
  ~StopSignal();
  StopSignal(const StopSignal&) = delete;
  StopSignal& operator=(const StopSignal&) = delete;

  // True once SIGTERM or SIGINT has arrived (since any StopSignal was constructed).
  static bool requested();
};

}  // namespace ddpm
