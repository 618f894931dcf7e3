// Bounds every wait on other ranks. MPI and NCCL never time out a collective by themselves, so a rank that is
// alive but stuck (SIGSTOP, a deadlock, a hung device) would hold the whole job forever. A watchdog thread
// checks the armed deadline and, when it passes, calls the handler (which reports and aborts the job).
#pragma once
#include <chrono>
#include <cstdint>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <string>
#include <thread>

namespace ddpm {

class Watchdog {
 public:
  // on_timeout(what, seconds) runs on the watchdog thread; it is expected not to return (MPI_Abort).
  // on_tick(doing), when set, runs on the watchdog thread every few hundred milliseconds with a sentence on what
  // this rank is doing (PeerStatus answers other ranks' questions with it).
  // peers_alive(doing), when set, runs on the watchdog thread once per timeout_seconds of a scope armed for longer
  // (a checkpoint, an evaluation): a long allowance is for a slow peer, not a lost one, so when it returns false
  // (a peer did not answer) on_timeout fires at once instead of at the end of the allowance.
  Watchdog(double timeout_seconds, std::function<void(const std::string&, double)> on_timeout,
           std::function<void(const std::string&)> on_tick = {},
           std::function<bool(const std::string&)> peers_alive = {});
  ~Watchdog();
  Watchdog(const Watchdog&) = delete;
  Watchdog& operator=(const Watchdog&) = delete;

  // Arms the watchdog for the lifetime of the scope ("gradient all-reduce of step 12", ...), with the
  // configured timeout times `allowance` (checkpoint writes get more).
  class Scope {
   public:
    Scope(Watchdog& watchdog, std::string what, double allowance = 1.0);
    ~Scope();
    Scope(const Scope&) = delete;
    Scope& operator=(const Scope&) = delete;

   private:
    Watchdog& watchdog_;
  };

  double timeout_seconds() const { return timeout_seconds_; }
  // What this rank is doing: PeerStatus::waiting(what, seconds) while armed, else since when it works outside.
  std::string doing();

 private:
  using Clock = std::chrono::steady_clock;
  void arm(std::string what, double seconds);
  void disarm();
  void run();
  std::string doing_locked(Clock::time_point now) const;

  const double timeout_seconds_;
  std::function<void(const std::string&, double)> on_timeout_;
  std::function<void(const std::string&)> on_tick_;
  std::function<bool(const std::string&)> peers_alive_;
  std::mutex mutex_;
  std::condition_variable cv_;
  bool armed_ = false;
  uint64_t arms_ = 0;  // counts arm() calls: tells a scope from the next one armed while the handler ran
  bool stopping_ = false;
  std::string what_;
  double armed_seconds_ = 0.0;
  Clock::time_point deadline_;
  Clock::time_point next_probe_;  // when peers_alive_ is asked next, while armed
  Clock::time_point armed_at_ = Clock::now();
  Clock::time_point disarmed_at_ = Clock::now();
  std::thread thread_;
};

}  // namespace ddpm
