// SIGTERM / SIGINT (what Slurm, Open MPI and a user's Ctrl-C send) become a request to stop. The trainer finishes
// the step it is in, commits a checkpoint and exits kExitStopped; sampling and evaluation stop within one model call
// and write nothing. Every long loop checks requested() (StopRequested is what they throw).
//
// A repeated SIGTERM is the same request again: a scheduler's signal often reaches a rank twice (slurmstepd signals
// every process of a step, and mpirun forwards what it got), and it must not cut the checkpoint short. Slurm sends
// SIGKILL after its grace (KillWait) if it means it. A second SIGINT is a person insisting: it ends the process at once.
#pragma once
#include <stdexcept>
#include <string>

namespace ddpm {

// `ddpm train` stopped on a signal before train.steps, with a checkpoint committed; run the same command to resume
// (sysexits' EX_TEMPFAIL). Also the exit of sample and eval commands stopped on a signal (nothing written).
constexpr int kExitStopped = 75;

class StopSignal {
 public:
  // Installs the handlers; the destructor restores the previous ones.
  StopSignal();
  ~StopSignal();
  StopSignal(const StopSignal&) = delete;
  StopSignal& operator=(const StopSignal&) = delete;

  // True once SIGTERM or SIGINT has arrived (since any StopSignal was constructed).
  static bool requested();
  // "SIGTERM" or "SIGINT" (the first that arrived), or "" before any.
  static std::string name();
  // Throws StopRequested(what) when requested().
  static void throw_if_requested(const std::string& what);
};

// A long computation abandoned on a stop request; `what` says which ("the bound evaluation of step 500").
class StopRequested : public std::runtime_error {
 public:
  explicit StopRequested(const std::string& what) : std::runtime_error(what) {}
};

}  // namespace ddpm
