#include "distributed/abort.h"

#include <signal.h>
#include <spawn.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <vector>

#include "distributed/console.h"

extern char** environ;

namespace ddpm {
namespace {

// The pid of the Open MPI process that launched this rank (mpirun on its host, orted elsewhere), or 0.
pid_t open_mpi_launcher() {
  const pid_t parent = ::getppid();
  std::ifstream comm("/proc/" + std::to_string(parent) + "/comm");
  std::string name;
  std::getline(comm, name);
  for (const char* launcher : {"mpirun", "mpiexec", "orterun", "orted", "prte", "prted", "prterun"}) {
    if (name.rfind(launcher, 0) == 0) return parent;
  }
  return 0;
}

void arm_fallback(const MpiContext& mpi, double grace_seconds) {
  std::string pids;
  for (const int pid : mpi.local_pids()) pids += " " + std::to_string(pid);
  const pid_t launcher = open_mpi_launcher();
  if (launcher != 0) pids += " " + std::to_string(launcher);
  char seconds[32];
  std::snprintf(seconds, sizeof(seconds), "%.1f", grace_seconds);
  const std::string message = "ddpm: error (" + mpi.where() + "): the job has not ended " + seconds +
                              " s after MPI_Abort (is a host unreachable?); killed what was left of it on " +
                              mpi.hostname() + ", pids";
  // Positional parameters, not text pasted into the script: nothing in the message is ever run.
  const std::string script =
      // Killing first: stderr may be a pipe whose reader is gone, and a write to it must not stop the rest.
      "trap '' PIPE; sleep \"$1\"; alive=; for p in $3; do kill -0 \"$p\" 2>/dev/null && alive=\"$alive $p\"; done; "
      "[ -z \"$alive\" ] && exit 0; kill -KILL $alive; echo \"$2$alive\" >&2";
  std::vector<std::string> args = {"/bin/sh", "-c", script, "ddpm-abort-fallback", seconds, message, pids};
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSID);  // not in the ranks' process group, not killed with them
  pid_t child = 0;
  const int error = ::posix_spawn(&child, "/bin/sh", nullptr, &attr, argv.data(), environ);
  posix_spawnattr_destroy(&attr);
  if (error != 0) print_line("ddpm: warning (" + mpi.where() + "): could not start the abort fallback (/bin/sh)");
}

}  // namespace

void abort_job_everywhere(const MpiContext& mpi, int code, double grace_seconds) {
  if (mpi.world_size() > 1) arm_fallback(mpi, grace_seconds);
  MPI_Abort(MPI_COMM_WORLD, code);
  std::_Exit(code);
}

}  // namespace ddpm
