#include "trainer/sampling/rank_progress.h"

#include <chrono>
#include <exception>
#include <thread>

#include "distributed/stop_signal.h"

namespace ddpm {
namespace {

constexpr int kReportTag = 17;   // rank → 0: [done, flag]
constexpr int kStopTag = 18;     // 0 → rank: stop now (another rank stopped)
constexpr int kReleaseTag = 19;  // 0 → rank, at the end: [any rank stopped, a stop notice was sent to you]
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
    told_to_stop_.assign(static_cast<size_t>(mpi.world_size()), 0);
    line_->update(already_done);
  }
}

RankProgress::~RankProgress() {
  // Left by an error on this rank (the job is being aborted): free nothing collective, wait for no one.
  if (std::uncaught_exceptions() > 0) return;
  if (pending_ != MPI_REQUEST_NULL) MPI_Request_free(&pending_);
  if (comm_ != MPI_COMM_NULL) MPI_Comm_free(&comm_);
}

void RankProgress::report(double done, double flag) {
  if (pending_ != MPI_REQUEST_NULL) {
    int complete = 0;
    check_mpi(MPI_Test(&pending_, &complete, MPI_STATUS_IGNORE), "MPI_Test of a progress report");
    if (!complete && flag == kReport) return;  // rank 0 is busy: this report is skipped, a later one follows
    if (!complete) check_mpi(MPI_Wait(&pending_, MPI_STATUS_IGNORE), "MPI_Wait for a progress report");
  }
  message_[0] = done;
  message_[1] = flag;
  check_mpi(MPI_Isend(message_, 2, MPI_DOUBLE, 0, kReportTag, comm_, &pending_), "MPI_Isend of a progress report");
}

void RankProgress::drain() {
  for (;;) {
    int arrived = 0;
    MPI_Status status;
    check_mpi(MPI_Iprobe(MPI_ANY_SOURCE, kReportTag, comm_, &arrived, &status), "MPI_Iprobe for progress reports");
    if (!arrived) break;
    double message[2];
    check_mpi(MPI_Recv(message, 2, MPI_DOUBLE, status.MPI_SOURCE, kReportTag, comm_, MPI_STATUS_IGNORE),
              "MPI_Recv of a progress report");
    const size_t source = static_cast<size_t>(status.MPI_SOURCE);
    done_[source] = message[0];
    if (message[1] != kReport) finished_[source] = true;
    if (message[1] == kStopped) any_stopped_ = true;
  }
  if (any_stopped_) tell_ranks_to_stop();
}

void RankProgress::tell_ranks_to_stop() {
  static const int kNotice = 1;
  for (int r = 1; r < mpi_.world_size(); ++r) {
    if (told_to_stop_[static_cast<size_t>(r)] || finished_[static_cast<size_t>(r)]) continue;
    told_to_stop_[static_cast<size_t>(r)] = 1;
    notices_.emplace_back(MPI_REQUEST_NULL);
    check_mpi(MPI_Isend(&kNotice, 1, MPI_INT, r, kStopTag, comm_, &notices_.back()), "MPI_Isend of a stop notice");
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
    if (any_stopped_) throw StopRequested("sampling");
    return;
  }
  int arrived = 0;
  check_mpi(MPI_Iprobe(0, kStopTag, comm_, &arrived, MPI_STATUS_IGNORE), "MPI_Iprobe for a stop notice");
  if (arrived) {
    int notice = 0;
    check_mpi(MPI_Recv(&notice, 1, MPI_INT, 0, kStopTag, comm_, MPI_STATUS_IGNORE), "MPI_Recv of a stop notice");
    stop_received_ = true;
    throw StopRequested("sampling");
  }
  const double now = now_seconds();
  if (now - last_sent_seconds_ < kReportInterval) return;
  last_sent_seconds_ = now;
  report(done, kReport);
}

bool RankProgress::finish(bool stopped) {
  if (mpi_.rank() != 0) {
    // The last report goes whether or not rank 0 took the one before: a rank's messages arrive in order.
    if (pending_ != MPI_REQUEST_NULL) check_mpi(MPI_Wait(&pending_, MPI_STATUS_IGNORE), "MPI_Wait for a progress report");
    report(last_local_, stopped ? kStopped : kFinished);
    check_mpi(MPI_Wait(&pending_, MPI_STATUS_IGNORE), "MPI_Wait for the last progress report");
    int release[2] = {0, 0};
    check_mpi(MPI_Recv(release, 2, MPI_INT, 0, kReleaseTag, comm_, MPI_STATUS_IGNORE), "MPI_Recv of the release");
    if (release[1] && !stop_received_) {  // a notice sent before rank 0 knew this rank was done: take it
      int notice = 0;
      check_mpi(MPI_Recv(&notice, 1, MPI_INT, 0, kStopTag, comm_, MPI_STATUS_IGNORE), "MPI_Recv of a stop notice");
    }
    return release[0] != 0;
  }
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
  std::vector<MPI_Request> releases;
  std::vector<int> messages(2 * static_cast<size_t>(mpi_.world_size()), 0);
  for (int r = 1; r < mpi_.world_size(); ++r) {
    int* release = &messages[2 * static_cast<size_t>(r)];
    release[0] = any_stopped_ ? 1 : 0;
    release[1] = told_to_stop_[static_cast<size_t>(r)];
    releases.emplace_back(MPI_REQUEST_NULL);
    check_mpi(MPI_Isend(release, 2, MPI_INT, r, kReleaseTag, comm_, &releases.back()), "MPI_Isend of a release");
  }
  for (std::vector<MPI_Request>* requests : {&releases, &notices_}) {
    if (requests->empty()) continue;
    check_mpi(MPI_Waitall(static_cast<int>(requests->size()), requests->data(), MPI_STATUSES_IGNORE),
              "MPI_Waitall for the releases");
  }
  notices_.clear();
  return any_stopped_;
}

}  // namespace ddpm
