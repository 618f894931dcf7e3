#include "trainer/sampling/rank_progress.h"

#include <chrono>
#include <thread>


namespace ddpm {
namespace {

constexpr int kTag = 17;
constexpr double kReport = 0, kFinished = 1, kStopped = 2;
constexpr double kReportInterval = 0.5;  // seconds between a rank's reports: a few messages a second at most

double now_seconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

}  // namespace

RankProgress::RankProgress(const MpiContext& mpi, ProgressMode mode, const std::string& what, double already_done,
                           double total, const std::string& unit)
    : mpi_(mpi), already_done_(already_done) {
  check_mpi(MPI_Comm_dup(mpi.comm(), &comm_), "MPI_Comm_dup for the progress reports");
  if (mpi.rank() == 0) {
    line_ = std::make_unique<TaskProgress>(mode, what, total, unit);
    done_.assign(static_cast<size_t>(mpi.world_size()), 0.0);
    finished_.assign(static_cast<size_t>(mpi.world_size()), false);
    line_->update(already_done);
  }
}

RankProgress::~RankProgress() {
  // Leaving by an exception (an error on this rank: the job is being aborted): do not wait for rank 0.
  if (pending_ != MPI_REQUEST_NULL) MPI_Request_free(&pending_);
  if (comm_ != MPI_COMM_NULL) MPI_Comm_free(&comm_);
}

void RankProgress::send(double done, double flag) {
  if (pending_ != MPI_REQUEST_NULL) {
    int complete = 0;
    check_mpi(MPI_Test(&pending_, &complete, MPI_STATUS_IGNORE), "MPI_Test of a progress report");
    if (!complete && flag == kReport) return;  // rank 0 is busy: this report is skipped, a later one follows
    if (!complete) check_mpi(MPI_Wait(&pending_, MPI_STATUS_IGNORE), "MPI_Wait for a progress report");
  }
  message_[0] = done;
  message_[1] = flag;
  check_mpi(MPI_Isend(message_, 2, MPI_DOUBLE, 0, kTag, comm_, &pending_), "MPI_Isend of a progress report");
}

void RankProgress::drain() {
  for (;;) {
    int arrived = 0;
    MPI_Status status;
    check_mpi(MPI_Iprobe(MPI_ANY_SOURCE, kTag, comm_, &arrived, &status), "MPI_Iprobe for progress reports");
    if (!arrived) return;
    double message[2];
    check_mpi(MPI_Recv(message, 2, MPI_DOUBLE, status.MPI_SOURCE, kTag, comm_, MPI_STATUS_IGNORE),
              "MPI_Recv of a progress report");
    const size_t source = static_cast<size_t>(status.MPI_SOURCE);
    done_[source] = message[0];
    if (message[1] != kReport) finished_[source] = true;
    if (message[1] == kStopped) any_stopped_ = true;
  }
}

void RankProgress::draw() {
  double sum = already_done_;
  for (const double d : done_) sum += d;
  line_->update(sum);
}

void RankProgress::local(double done) {
  last_local_ = done;
  if (mpi_.rank() == 0) {
    done_[0] = done;
    drain();
    draw();
    return;
  }
  const double now = now_seconds();
  if (now - last_sent_seconds_ < kReportInterval) return;
  last_sent_seconds_ = now;
  send(done, kReport);
}

bool RankProgress::finish(bool stopped) {
  if (mpi_.rank() != 0) {
    // The last report goes whether or not rank 0 took the one before: a rank's messages arrive in order.
    if (pending_ != MPI_REQUEST_NULL) check_mpi(MPI_Wait(&pending_, MPI_STATUS_IGNORE), "MPI_Wait for a progress report");
    send(last_local_, stopped ? kStopped : kFinished);
    check_mpi(MPI_Wait(&pending_, MPI_STATUS_IGNORE), "MPI_Wait for the last progress report");
  } else {
    finished_[0] = true;
    any_stopped_ = any_stopped_ || stopped;
    for (;;) {
      drain();
      draw();
      bool all = true;
      for (const bool f : finished_) all = all && f;
      if (all) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    if (!any_stopped_) line_->finish();
  }
  int mine = (mpi_.rank() == 0 ? any_stopped_ : stopped) ? 1 : 0, any = 0;
  check_mpi(MPI_Allreduce(&mine, &any, 1, MPI_INT, MPI_MAX, comm_), "MPI_Allreduce of the stop flags");
  return any != 0;
}

}  // namespace ddpm
