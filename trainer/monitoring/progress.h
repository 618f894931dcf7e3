// What rank 0 tells the user while training: a progress line with step, loss, images/s and ETA (a redrawn bar
// on a terminal, plain lines every N steps otherwise), and the same figures as JSON lines in the run directory.
#pragma once
#include <chrono>
#include <cstdint>
#include <fstream>
#include <string>

namespace ddpm {

enum class ProgressMode { kAuto, kBar, kPlain, kSilent };  // silent: the JSON log only
ProgressMode parse_progress_mode(const std::string& name);

struct StepReport {
  int64_t step = 0;  // steps completed
  double loss = 0.0;
  double grad_norm = 0.0;
  double lr = 0.0;
  double images_per_second = 0.0;  // all ranks together
  double eta_seconds = 0.0;
  double comm_exposed_seconds = 0.0;  // last step: waiting for gradients after backward returned
  double comm_total_seconds = 0.0;    // last step: first bucket launched → last bucket reduced
  int64_t skipped_steps = 0;          // since this process started: non-finite loss or gradient on some rank
  int64_t timestep_sampler_filled = -1;  // loss_second_moment: timesteps with a full loss history (-1: uniform t)
};

// "1h02m", "3m05s", "42s"
std::string format_duration(double seconds);

class Progress {
 public:
  // log_path empty: no JSON log. total_steps: the run's target.
  Progress(ProgressMode mode, int64_t total_steps, const std::string& log_path);
  ~Progress();
  void report(const StepReport& report);
  void finish();

 private:
  bool bar_;
  bool silent_;
  int64_t total_steps_;
  std::ofstream log_;
  bool open_line_ = false;
};

// The progress of a long count-based command (sampling, evaluation, FID statistics) on rank 0:
//   "sampling [########................] 1536/50000 images  41.2 images/s  ETA 19m36s"
// redrawn at most 5 times a second on a terminal; otherwise (a log file, a batch job) one plain line every
// plain_interval_seconds and one at the end. The rate is the average since the first update, counted from the
// amount done then (a resumed job does not count the work it found done).
class TaskProgress {
 public:
  TaskProgress(ProgressMode mode, std::string what, double total, std::string unit, double plain_interval_seconds = 10.0);
  ~TaskProgress();
  TaskProgress(const TaskProgress&) = delete;
  TaskProgress& operator=(const TaskProgress&) = delete;
  void update(double done);
  // The last line, drawn whatever the rate limit (and the bar's line closed).
  void finish();

 private:
  using Clock = std::chrono::steady_clock;
  std::string line(double done) const;

  bool bar_;
  bool silent_;
  std::string what_;
  double total_;
  std::string unit_;
  double plain_interval_;
  bool started_ = false;
  bool open_line_ = false;
  bool finished_ = false;
  double first_done_ = 0.0;
  double last_done_ = 0.0;
  Clock::time_point first_time_;
  Clock::time_point last_draw_;
};

// Smoothed throughput and time left, from step times fed as they come.
class Throughput {
 public:
  explicit Throughput(int64_t images_per_step);
  void start(int64_t step);
  // Returns images/s over the last interval; call after `step` completed.
  double mark(int64_t step);
  double eta_seconds(int64_t step, int64_t total_steps) const;

 private:
  using Clock = std::chrono::steady_clock;
  int64_t images_per_step_;
  Clock::time_point last_time_;
  int64_t last_step_ = 0;
  double seconds_per_step_ = 0.0;  // exponentially smoothed
};

}  // namespace ddpm
