// What keeps the replicas of a data-parallel job one model: every rank starts from the same config and rank 0's
// weights, a checksum now and then proves the weights are still equal, and no wait on another rank lasts
// forever (the watchdog; at its deadline the job is aborted with the culprit named).
#pragma once
#include <torch/torch.h>

#include <memory>
#include <string>
#include <vector>

#include "distributed/communicator.h"
#include "distributed/mpi_context.h"
#include "distributed/peer_status.h"
#include "distributed/watchdog.h"

namespace ddpm {

class ReplicaGuard {
 public:
  // Collective (duplicates a communicator for PeerStatus), and first of all checks that every rank runs rank 0's
  // `resolved_config` (check_same_config), before any rank builds anything that could fail on its own. Every wait
  // armed on watchdog() that takes longer than `timeout_seconds` (times its allowance) aborts the job.
  ReplicaGuard(const MpiContext& mpi, Communicator& comm, double timeout_seconds, const std::string& resolved_config);
  ReplicaGuard(const ReplicaGuard&) = delete;
  ReplicaGuard& operator=(const ReplicaGuard&) = delete;

  Watchdog& watchdog() { return *watchdog_; }

  // Rank 0's values into every parameter of every rank.
  void broadcast_parameters(const std::vector<torch::Tensor>& parameters);
  // Collective. Throws on every rank when some rank's parameters differ from rank 0's; the message of that rank
  // names the first parameter (of `names`) that differs.
  void check_replicas(const std::vector<torch::Tensor>& parameters, const std::vector<std::string>& names,
                      int64_t step);
  // Reports which wait hung, asks the other ranks what they are doing, names the culprit, and ends the job
  // (the communicator aborted, MPI_Abort). Runs on the watchdog thread.
  [[noreturn]] void abort_job(const std::string& what, double seconds) const;

 private:
  // Collective (the constructor's). Throws on every rank unless `resolved_config` (the config as printed:
  // "section:" lines and indented "key: value" lines) is rank 0's; the message names each key that differs.
  void check_same_config(const std::string& resolved_config) const;
  // How long the live ranks get to answer a question of the peer status.
  double answer_grace() const;

  const MpiContext& mpi_;
  Communicator& comm_;
  std::unique_ptr<PeerStatus> peer_status_;  // names the hung rank when the watchdog fires
  std::unique_ptr<Watchdog> watchdog_;
};

}  // namespace ddpm
