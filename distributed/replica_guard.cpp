#include "distributed/replica_guard.h"

#include <algorithm>
#include <cstdlib>
#include <sstream>

#include "distributed/abort.h"
#include "distributed/console.h"

namespace ddpm {
namespace {

// "train.lr: 0.002 here, 0.001 on rank 0; ..." for the keys whose lines differ in two resolved configs
// (unindented section lines, indented "key: value" lines).
std::string config_differences(const std::string& mine, const std::string& theirs) {
  std::istringstream a(mine), b(theirs);
  std::string line_a, line_b, section, out;
  while (std::getline(a, line_a) && std::getline(b, line_b)) {
    if (!line_a.empty() && line_a[0] != ' ') section = line_a.substr(0, line_a.find(':'));
    if (line_a == line_b) continue;
    const auto trimmed = [](const std::string& line) { return line.substr(line.find_first_not_of(' ')); };
    const std::string key = trimmed(line_a).substr(0, trimmed(line_a).find(':'));
    const auto value = [](const std::string& line) { return line.substr(line.find(':') + 1); };
    out += (out.empty() ? "" : "; ") + section + "." + key + ":" + value(line_a) + " here," + value(line_b) + " on rank 0";
  }
  return out;
}

}  // namespace

ReplicaGuard::ReplicaGuard(const MpiContext& mpi, Communicator& comm, double timeout_seconds,
                           const std::string& resolved_config)
    : mpi_(mpi),
      comm_(comm),
      peer_status_(std::make_unique<PeerStatus>(mpi)),
      watchdog_(std::make_unique<Watchdog>(
          timeout_seconds, [this](const std::string& what, double s) { abort_job(what, s); },
          [this](const std::string& doing) { peer_status_->answer_questions(doing); },
          [this](const std::string& doing) { return peer_status_->all_answer(doing, answer_grace()); })) {
  check_same_config(resolved_config);
}

void ReplicaGuard::check_same_config(const std::string& resolved_config) const {
  if (mpi_.world_size() == 1) return;
  const std::string rank0 = mpi_.broadcast_string(resolved_config);
  const std::string error =
      resolved_config == rank0 ? ""
                               : "rank " + std::to_string(mpi_.rank()) + "'s resolved config differs from rank 0's (" +
                                     config_differences(resolved_config, rank0) +
                                     "): every rank must be started with the same config and --set arguments";
  mpi_.throw_if_any_failed(error, "another rank's resolved config differs from rank 0's (see its message)");
}

void ReplicaGuard::broadcast_parameters(const std::vector<torch::Tensor>& parameters) {
  if (mpi_.world_size() == 1) return;
  torch::NoGradGuard no_grad;
  for (const torch::Tensor& p : parameters) {
    torch::Tensor data = p.data();
    comm_.broadcast(data, 0);
  }
}

void ReplicaGuard::check_replicas(const std::vector<torch::Tensor>& parameters, const std::vector<std::string>& names,
                                  int64_t step) {
  torch::NoGradGuard no_grad;
  // Per parameter: its sum and its sum of squares in float64; a checksum with one entry per tensor also
  // tells which parameter diverged.
  std::vector<torch::Tensor> sums;
  for (const torch::Tensor& p : parameters) {
    const torch::Tensor d = p.detach().to(torch::kFloat64);
    sums.push_back(torch::stack({d.sum(), d.pow(2).sum()}));
  }
  const torch::Tensor mine = torch::stack(sums).contiguous();
  torch::Tensor rank0 = mine.clone();
  const Watchdog::Scope armed(*watchdog_, "the replica check of step " + std::to_string(step));
  comm_.broadcast(rank0, 0);
  comm_.synchronize();
  const torch::Tensor differs = (mine != rank0).any(1).cpu();
  std::string first;
  for (int64_t i = 0; i < differs.size(0) && first.empty(); ++i) {
    if (differs[i].item<bool>()) first = names[static_cast<size_t>(i)];
  }
  const std::string diverged = "replicas diverged at step " + std::to_string(step) + ": ";
  mpi_.throw_if_any_failed(
      first.empty() ? "" : diverged + "rank " + std::to_string(mpi_.rank()) + "'s " + first + " differs from rank 0's",
      diverged + "another rank's parameters differ from rank 0's");
}

double ReplicaGuard::answer_grace() const {
  // A few seconds, and never more than a quarter of the timeout, for the live ranks to answer.
  return std::clamp(watchdog_->timeout_seconds() / 4.0, 1.0, 5.0);
}

void ReplicaGuard::abort_job(const std::string& what, double seconds) const {
  const std::string prefix = "ddpm: error (" + mpi_.where() + "): ";
  std::ostringstream seconds_text;
  seconds_text << seconds;
  print_line(prefix + what + " has not completed after " + seconds_text.str() +
             " s: another rank is dead or hung (distributed.timeout_seconds); asking the other ranks");
  const std::string diagnosis = peer_status_->diagnose(what, PeerStatus::waiting(what, seconds), answer_grace());
  if (!diagnosis.empty()) print_line(prefix + diagnosis);
  print_line(prefix + "aborting the job");
  comm_.abort();
  abort_job_everywhere(mpi_, 1, std::clamp(watchdog_->timeout_seconds() / 4.0, 5.0, 30.0));
}

}  // namespace ddpm
