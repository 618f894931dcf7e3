#include "trainer/loop/fault_injection.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <iostream>
#include <map>
#include <sstream>
#include <stdexcept>
#include <thread>

#include "distributed/console.h"

namespace ddpm {
namespace {

const std::map<std::string, FaultKind>& kinds() {
  static const std::map<std::string, FaultKind> names = {
      {"kill_in_checkpoint_write", FaultKind::kKillInCheckpointWrite},
      {"kill_before_checkpoint_rename", FaultKind::kKillBeforeCheckpointRename},
      {"kill_before_checkpoint_dir_sync", FaultKind::kKillBeforeCheckpointDirSync},
      {"nan_input", FaultKind::kNanInput},
      {"nan_loss", FaultKind::kNanLoss},
      {"nan_grad", FaultKind::kNanGrad},
      {"hang", FaultKind::kHang},
  };
  return names;
}

int64_t parse_number(const std::string& text, const std::string& fault) {
  if (text.empty() || text.find_first_not_of("0123456789") != std::string::npos || text.size() > 18) {
    throw std::invalid_argument("DDPM_FAULT: '" + fault + "': '" + text + "' is not a step or rank number");
  }
  return std::stoll(text);
}

}  // namespace

FaultInjector::FaultInjector(const std::string& spec, int rank) {
  // Every fault is checked on every rank (a typo in another rank's fault must not pass unnoticed here).
  if (!spec.empty() && spec.back() == ',') throw std::invalid_argument("DDPM_FAULT: '" + spec + "' ends with a comma");
  std::istringstream parts(spec);
  std::string fault;
  while (std::getline(parts, fault, ',')) {
    const size_t at = fault.find('@');
    if (at == std::string::npos) throw std::invalid_argument("DDPM_FAULT: '" + fault + "' is not kind@step[+][:rank]");
    const auto kind = kinds().find(fault.substr(0, at));
    if (kind == kinds().end()) throw std::invalid_argument("DDPM_FAULT: unknown fault kind in '" + fault + "'");
    std::string when = fault.substr(at + 1);
    const size_t colon = when.find(':');
    int64_t target_rank = rank;
    if (colon != std::string::npos) {
      target_rank = parse_number(when.substr(colon + 1), fault);
      when.resize(colon);
    }
    const bool and_later = !when.empty() && when.back() == '+';
    if (and_later) when.pop_back();
    const int64_t step = parse_number(when, fault);
    if (step < 1) throw std::invalid_argument("DDPM_FAULT: '" + fault + "': steps count from 1");
    if (target_rank == rank) faults_.push_back({kind->second, step, and_later});
  }
}

FaultInjector FaultInjector::from_environment(int rank) {
  const char* spec = std::getenv("DDPM_FAULT");
  if (spec == nullptr || *spec == '\0') return {};
  print_line("ddpm: warning: rank " + std::to_string(rank) + ": fault injection DDPM_FAULT=" + spec);
  return FaultInjector(spec, rank);
}

bool FaultInjector::injects_into_step() const {
  return std::any_of(faults_.begin(), faults_.end(), [](const Fault& f) {
    return f.kind == FaultKind::kNanInput || f.kind == FaultKind::kNanLoss || f.kind == FaultKind::kNanGrad;
  });
}

bool FaultInjector::active(FaultKind kind, int64_t step) const {
  for (const Fault& f : faults_) {
    if (f.kind == kind && (step == f.step || (f.and_later && step > f.step))) return true;
  }
  return false;
}

void FaultInjector::at_checkpoint_phase(CheckpointWritePhase phase, int64_t step) const {
  const FaultKind kind = phase == CheckpointWritePhase::kPartlyWritten     ? FaultKind::kKillInCheckpointWrite
                         : phase == CheckpointWritePhase::kWrittenAndSynced ? FaultKind::kKillBeforeCheckpointRename
                                                                            : FaultKind::kKillBeforeCheckpointDirSync;
  if (active(kind, step)) ::kill(::getpid(), SIGKILL);
}

void FaultInjector::maybe_hang(int64_t step) const {
  if (!active(FaultKind::kHang, step)) return;
  for (;;) std::this_thread::sleep_for(std::chrono::seconds(1));
}

}  // namespace ddpm
