#include "trainer/monitoring/progress.h"

#include <sys/ioctl.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <stdexcept>
#include <utility>

namespace ddpm {
namespace {

// Under mpirun stdout can look like a terminal even when redirected, with a width of 0: ask for the width
// too, and treat a 0 width as "not a terminal".
int terminal_width() {
  if (!::isatty(STDOUT_FILENO)) return 0;
  winsize size{};
  if (::ioctl(STDOUT_FILENO, TIOCGWINSZ, &size) != 0) return 0;
  return size.ws_col;
}

std::string json_number(double value) {
  if (!std::isfinite(value)) return "null";
  char text[64];
  std::snprintf(text, sizeof(text), "%.9g", value);
  return text;
}

}  // namespace

ProgressMode parse_progress_mode(const std::string& name) {
  if (name == "auto") return ProgressMode::kAuto;
  if (name == "bar") return ProgressMode::kBar;
  if (name == "plain") return ProgressMode::kPlain;
  throw std::invalid_argument("--progress must be auto, bar or plain, got '" + name + "'");
}

std::string format_duration(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "?";
  const long total = std::lround(seconds);
  char text[32];
  if (total >= 3600) {
    std::snprintf(text, sizeof(text), "%ldh%02ldm", total / 3600, (total % 3600) / 60);
  } else if (total >= 60) {
    std::snprintf(text, sizeof(text), "%ldm%02lds", total / 60, total % 60);
  } else {
    std::snprintf(text, sizeof(text), "%lds", total);
  }
  return text;
}

Progress::Progress(ProgressMode mode, int64_t total_steps, const std::string& log_path)
    : bar_(mode == ProgressMode::kBar || (mode == ProgressMode::kAuto && terminal_width() > 0)),
      silent_(mode == ProgressMode::kSilent),
      total_steps_(total_steps) {
  if (!log_path.empty()) {
    log_.open(log_path, std::ios::app);
    if (!log_) throw std::runtime_error("cannot open the training log " + log_path + " for writing");
  }
}

Progress::~Progress() { finish(); }

void Progress::report(const StepReport& r) {
  char line[256];
  std::snprintf(line, sizeof(line), "step %lld/%lld  loss %.4f  grad %.3f  lr %.2e  %.1f img/s  ETA %s",
                static_cast<long long>(r.step), static_cast<long long>(total_steps_), r.loss, r.grad_norm, r.lr,
                r.images_per_second, format_duration(r.eta_seconds).c_str());
  if (silent_) {
    // The JSON log below is all.
  } else if (bar_) {
    const int width = 24;
    const int filled = static_cast<int>(width * static_cast<double>(r.step) / static_cast<double>(total_steps_));
    std::string bar(static_cast<size_t>(filled), '#');
    bar.resize(width, '.');
    std::cout << "\r[" << bar << "] " << line << "\033[K" << std::flush;
    open_line_ = true;
  } else {
    std::cout << line << std::endl;
  }
  if (log_) {
    log_ << "{\"step\":" << r.step << ",\"loss\":" << json_number(r.loss) << ",\"grad_norm\":" << json_number(r.grad_norm)
         << ",\"lr\":" << json_number(r.lr) << ",\"images_per_second\":" << json_number(r.images_per_second)
         << ",\"eta_seconds\":" << json_number(r.eta_seconds)
         << ",\"comm_exposed_seconds\":" << json_number(r.comm_exposed_seconds)
         << ",\"comm_total_seconds\":" << json_number(r.comm_total_seconds) << ",\"skipped_steps\":" << r.skipped_steps;
    if (r.timestep_sampler_filled >= 0) log_ << ",\"timestep_sampler_filled\":" << r.timestep_sampler_filled;
    log_ << "}\n";
    log_.flush();
  }
}

void Progress::finish() {
  if (open_line_) std::cout << std::endl;
  open_line_ = false;
}

TaskProgress::TaskProgress(ProgressMode mode, std::string what, double total, std::string unit,
                           double plain_interval_seconds)
    : bar_(mode == ProgressMode::kBar || (mode == ProgressMode::kAuto && terminal_width() > 0)),
      silent_(mode == ProgressMode::kSilent),
      what_(std::move(what)),
      total_(total),
      unit_(std::move(unit)),
      plain_interval_(plain_interval_seconds) {}

TaskProgress::~TaskProgress() {
  if (open_line_) std::cout << std::endl;
}

std::string TaskProgress::line(double done) const {
  const double seconds = std::chrono::duration<double>(Clock::now() - first_time_).count();
  const double rate = seconds > 0 ? (done - first_done_) / seconds : 0.0;
  const double eta = rate > 0 ? (total_ - done) / rate : std::nan("");
  // Whole counts when the count is whole (images done), one decimal while a batch is under way.
  const bool whole = std::fabs(done - std::round(done)) < 1e-9;
  char text[256];
  std::snprintf(text, sizeof(text), "%s %.*f/%.0f %s  %.2f %s/s  %s %s", what_.c_str(), whole ? 0 : 1, done, total_,
                unit_.c_str(), rate, unit_.c_str(), done >= total_ ? "took" : "ETA",
                format_duration(done >= total_ ? seconds : eta).c_str());
  return text;
}

void TaskProgress::update(double done) {
  if (silent_ || finished_) return;
  const Clock::time_point now = Clock::now();
  if (!started_) {
    started_ = true;
    first_done_ = last_done_ = done;
    first_time_ = last_draw_ = now;
    return;  // no rate yet
  }
  last_done_ = done;
  const double since_draw = std::chrono::duration<double>(now - last_draw_).count();
  if (since_draw < (bar_ ? 0.2 : plain_interval_)) return;
  last_draw_ = now;
  if (bar_) {
    const int width = 24;
    const int filled = total_ > 0 ? static_cast<int>(width * std::min(done / total_, 1.0)) : width;
    std::string bar(static_cast<size_t>(filled), '#');
    bar.resize(width, '.');
    const std::string text = line(done);
    const size_t space = text.find(' ');
    std::cout << "\r" << text.substr(0, space) << " [" << bar << "]" << text.substr(space) << "\033[K" << std::flush;
    open_line_ = true;
  } else {
    std::cout << line(done) << std::endl;
  }
}

void TaskProgress::finish() {
  if (silent_ || finished_) return;
  finished_ = true;
  if (!started_) return;  // nothing was done here: the caller says what it found
  if (bar_) {
    std::cout << "\r" << line(last_done_) << "\033[K" << std::endl;
  } else {
    std::cout << line(last_done_) << std::endl;
  }
  open_line_ = false;
}

Throughput::Throughput(int64_t images_per_step) : images_per_step_(images_per_step) {}

void Throughput::start(int64_t step) {
  last_time_ = Clock::now();
  last_step_ = step;
}

double Throughput::mark(int64_t step) {
  const Clock::time_point now = Clock::now();
  const double seconds = std::chrono::duration<double>(now - last_time_).count();
  const int64_t steps = step - last_step_;
  last_time_ = now;
  last_step_ = step;
  if (steps <= 0 || seconds <= 0) return 0.0;
  const double per_step = seconds / static_cast<double>(steps);
  seconds_per_step_ = seconds_per_step_ == 0.0 ? per_step : 0.7 * seconds_per_step_ + 0.3 * per_step;
  return static_cast<double>(images_per_step_) * static_cast<double>(steps) / seconds;
}

double Throughput::eta_seconds(int64_t step, int64_t total_steps) const {
  return seconds_per_step_ * static_cast<double>(std::max<int64_t>(total_steps - step, 0));
}

}  // namespace ddpm
