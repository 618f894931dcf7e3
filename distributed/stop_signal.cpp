#include "distributed/stop_signal.h"

#include <csignal>
#include <unistd.h>

namespace ddpm {
namespace {

// A signal handler can reach only static storage: this is the one piece of global state, and it is only
// ever set by the handler and read by the loops.
volatile std::sig_atomic_t g_stop_signal = 0;
struct sigaction g_previous_term {};
struct sigaction g_previous_int {};

void on_signal(int signal) {
  if (g_stop_signal != 0) {
    if (signal != SIGINT || g_stop_signal != SIGINT) return;  // the same request again (see the header)
    // Ctrl-C twice: the user means it. Default action, now.
    ::signal(signal, SIG_DFL);
    ::raise(signal);
    return;
  }
  g_stop_signal = signal;
}

}  // namespace

StopSignal::StopSignal() {
  g_stop_signal = 0;
  struct sigaction action {};
  action.sa_handler = on_signal;
  sigemptyset(&action.sa_mask);
  action.sa_flags = SA_RESTART;  // blocking calls (reads, MPI) continue; the loops check between steps
  sigaction(SIGTERM, &action, &g_previous_term);
  sigaction(SIGINT, &action, &g_previous_int);
}

StopSignal::~StopSignal() {
  sigaction(SIGTERM, &g_previous_term, nullptr);
  sigaction(SIGINT, &g_previous_int, nullptr);
}

bool StopSignal::requested() { return g_stop_signal != 0; }

std::string StopSignal::name() {
  switch (g_stop_signal) {
    case 0: return "";
    case SIGTERM: return "SIGTERM";
    case SIGINT: return "SIGINT";
    default: return "signal " + std::to_string(g_stop_signal);
  }
}

void StopSignal::throw_if_requested(const std::string& what) {
  if (requested()) throw StopRequested(what);
}

}  // namespace ddpm
