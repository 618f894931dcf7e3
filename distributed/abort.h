// Ending the whole job from one rank, on every host, even when a host is cut off.
//
// MPI_Abort asks Open MPI's launcher to end the job; mpirun (and the orted daemon of every other host) then waits
// for the daemon of every host to confirm. A host that has dropped off the network never confirms, so mpirun and
// the daemons would wait forever (tests/multihost: still there after 900 s), with the ranks gone. So an aborting
// rank first leaves a fallback behind: a small process, in a session of its own, that `grace_seconds` later ends
// whatever is left on this host (its ranks, then mpirun or the orted that launched them) and says so. A launcher
// that ended the job by then leaves it nothing to do. Processes of other launchers (slurmstepd under srun) are
// never touched: under Slurm the ranks end, and slurmd ends the step.
#pragma once
#include <string>

#include "distributed/mpi_context.h"

namespace ddpm {

// The fallback's delay when the job is aborted on an error (the watchdog uses a quarter of its timeout, 5–30 s).
constexpr double kAbortFallbackSeconds = 10.0;

// Arms the fallback, calls MPI_Abort(MPI_COMM_WORLD, code), and exits with `code` should MPI_Abort return.
[[noreturn]] void abort_job_everywhere(const MpiContext& mpi, int code, double grace_seconds);

}  // namespace ddpm
