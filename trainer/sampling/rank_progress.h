// One progress line for work spread over ranks whose shares finish at different times (sharded sampling): every
// rank sends rank 0 what it has done, rank 0 draws the sum. Point-to-point and non-blocking, on a communicator of
// its own, so ranks with more work never wait for ranks with less until the very end. It also carries a stop: a
// rank that stops (SIGTERM reached it) tells rank 0, which tells every rank still working, so that all of them stop
// within one model call even when the signal reached only some.
#pragma once
#include <mpi.h>

#include <memory>
#include <string>
#include <vector>

#include "distributed/mpi_context.h"
#include "trainer/monitoring/progress.h"

namespace ddpm {

class RankProgress {
 public:
  // already_done: the work found done before this run (counted in the total, not in the rate).
  RankProgress(const MpiContext& mpi, ProgressMode mode, const std::string& what, double already_done, double total,
               const std::string& unit);
  ~RankProgress();
  RankProgress(const RankProgress&) = delete;
  RankProgress& operator=(const RankProgress&) = delete;

  // This rank's work done in this run so far (monotone). Throws StopRequested("sampling") when another rank stopped.
  void local(double done);
  // Collective: waits until every rank has called it (rank 0 keeps the line moving meanwhile). Returns true on every
  // rank when `stopped` was true on any rank.
  bool finish(bool stopped);

 private:
  void report(double done, double flag);
  void drain();
  void draw();
  void tell_ranks_to_stop();

  const MpiContext& mpi_;
  MPI_Comm comm_ = MPI_COMM_NULL;
  double already_done_;
  std::unique_ptr<TaskProgress> line_;     // rank 0 only
  std::vector<double> done_;               // rank 0: each rank's latest report
  std::vector<bool> finished_;             // rank 0: which ranks have sent their last report
  std::vector<int> told_to_stop_;          // rank 0: the ranks sent a stop notice
  std::vector<MPI_Request> notices_;       // rank 0: those notices in flight
  bool any_stopped_ = false;
  bool stop_received_ = false;             // other ranks: rank 0's notice taken
  MPI_Request pending_ = MPI_REQUEST_NULL;  // other ranks: the report in flight
  double message_[2] = {0, 0};
  double last_sent_seconds_ = -1.0;
  double last_local_ = 0.0;
};

}  // namespace ddpm
