#include "distributed/watchdog.h"

#include <algorithm>
#include <cstdio>

#include "distributed/peer_status.h"

namespace ddpm {
namespace {
// How often the thread wakes to answer peers' questions; they wait up to a few seconds for an answer.
constexpr std::chrono::milliseconds kTick(200);
}  // namespace

Watchdog::Watchdog(double timeout_seconds, std::function<void(const std::string&, double)> on_timeout,
                   std::function<void(const std::string&)> on_tick, std::function<bool(const std::string&)> peers_alive)
    : timeout_seconds_(timeout_seconds),
      on_timeout_(std::move(on_timeout)),
      on_tick_(std::move(on_tick)),
      peers_alive_(std::move(peers_alive)),
      thread_([this] { run(); }) {}

Watchdog::~Watchdog() {
  {
    const std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

Watchdog::Scope::Scope(Watchdog& watchdog, std::string what, double allowance) : watchdog_(watchdog) {
  watchdog_.arm(std::move(what), watchdog_.timeout_seconds_ * allowance);
}

Watchdog::Scope::~Scope() { watchdog_.disarm(); }

void Watchdog::arm(std::string what, double seconds) {
  const std::lock_guard<std::mutex> lock(mutex_);
  armed_ = true;
  ++arms_;
  what_ = std::move(what);
  armed_seconds_ = seconds;
  armed_at_ = Clock::now();
  const auto after = [this](double s) { return armed_at_ + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(s)); };
  deadline_ = after(seconds);
  next_probe_ = after(timeout_seconds_);
  cv_.notify_all();
}

void Watchdog::disarm() {
  const std::lock_guard<std::mutex> lock(mutex_);
  armed_ = false;
  disarmed_at_ = Clock::now();
}

std::string Watchdog::doing() {
  const std::lock_guard<std::mutex> lock(mutex_);
  return doing_locked(Clock::now());
}

std::string Watchdog::doing_locked(Clock::time_point now) const {
  const auto seconds = [now](Clock::time_point since) { return std::chrono::duration<double>(now - since).count(); };
  if (armed_) return PeerStatus::waiting(what_, seconds(armed_at_));
  char text[64];
  std::snprintf(text, sizeof(text), "%.1f s", seconds(disarmed_at_));
  return "working outside any collective for " + std::string(text) +
         (what_.empty() ? std::string(" (none yet)") : " since " + what_);
}

void Watchdog::run() {
  std::unique_lock<std::mutex> lock(mutex_);
  while (!stopping_) {
    const Clock::time_point now = Clock::now();
    if (on_tick_) {
      const std::string doing = doing_locked(now);
      lock.unlock();
      on_tick_(doing);
      lock.lock();
      if (stopping_) break;
    }
    if (armed_ && Clock::now() >= deadline_) {
      const std::string what = what_;
      const double seconds = armed_seconds_;
      const uint64_t arm = arms_;
      lock.unlock();
      on_timeout_(what, seconds);
      lock.lock();
      // Fired once per scope; a scope armed while the handler ran keeps its own deadline.
      if (arms_ == arm) armed_ = false;
      continue;
    }
    if (armed_ && peers_alive_ && Clock::now() >= next_probe_) {
      const uint64_t arm = arms_;
      next_probe_ += std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(timeout_seconds_));
      const std::string what = what_;
      const double seconds = std::chrono::duration<double>(Clock::now() - armed_at_).count();
      const std::string doing = doing_locked(Clock::now());
      lock.unlock();
      const bool alive = peers_alive_(doing);
      lock.lock();
      // Still in the same wait (it may have ended meanwhile): a silent peer ends it now.
      if (!alive && armed_ && arms_ == arm) {
        lock.unlock();
        on_timeout_(what, seconds);
        lock.lock();
        if (arms_ == arm) armed_ = false;
      }
      continue;
    }
    if (!armed_ && !on_tick_) {
      cv_.wait(lock, [this] { return stopping_ || armed_; });
      continue;
    }
    const Clock::time_point wake = peers_alive_ ? std::min(deadline_, next_probe_) : deadline_;
    const Clock::time_point until = !on_tick_ ? wake : armed_ ? std::min(Clock::now() + kTick, wake) : Clock::now() + kTick;
    const bool was_armed = armed_;
    const Clock::time_point deadline = deadline_;
    cv_.wait_until(lock, until, [&] { return stopping_ || armed_ != was_armed || deadline_ != deadline; });
  }
}

}  // namespace ddpm
