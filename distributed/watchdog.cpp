#include "distributed/watchdog.h"

namespace ddpm {

Watchdog::Watchdog(double timeout_seconds, std::function<void(const std::string&, double)> on_timeout)
    : timeout_seconds_(timeout_seconds), on_timeout_(std::move(on_timeout)), thread_([this] { run(); }) {}

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
  what_ = std::move(what);
  armed_seconds_ = seconds;
  deadline_ = Clock::now() + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds));
  cv_.notify_all();
}

void Watchdog::disarm() {
  const std::lock_guard<std::mutex> lock(mutex_);
  armed_ = false;
}

void Watchdog::run() {
  std::unique_lock<std::mutex> lock(mutex_);
  while (!stopping_) {
    if (!armed_) {
      cv_.wait(lock, [this] { return stopping_ || armed_; });
      continue;
    }
    const Clock::time_point deadline = deadline_;
    cv_.wait_until(lock, deadline, [this, deadline] { return stopping_ || !armed_ || deadline_ != deadline; });
    if (!stopping_ && armed_ && deadline_ == deadline && Clock::now() >= deadline) {
      const std::string what = what_;
      const double seconds = armed_seconds_;
      lock.unlock();
      on_timeout_(what, seconds);
      lock.lock();
      armed_ = false;
    }
  }
}

}  // namespace ddpm
