#include "trainer/loop/checkpointer.h"

#include <chrono>
#include <filesystem>
#include <optional>

#include "distributed/console.h"
#include "trainer/checkpoint/atomic_file.h"
#include "trainer/checkpoint/rng_state.h"
#include "trainer/config/builders.h"

namespace ddpm {
namespace fs = std::filesystem;

Checkpointer::Checkpointer(const Config& config, const MpiContext& mpi, const torch::Device& device, Watchdog& watchdog,
                           const FaultInjector& faults)
    : config_(config), mpi_(mpi), device_(device), watchdog_(watchdog), faults_(faults) {}

CheckpointLabel Checkpointer::label() const {
  return {model_shape_signature(config_), to_yaml(config_), mpi_.world_size()};
}

std::string Checkpointer::resume_or_start(TrainState& state) const {
  const fs::path dir = config_.run.dir;
  std::string error;
  std::string chosen;
  std::optional<Checkpoint> newest;
  if (mpi_.rank() == 0) {
    try {
      fs::create_directories(dir);
      remove_interrupted_writes(dir);  // this process owns the directory; nothing else writes there now
      std::vector<std::string> warnings;
      fs::path path;
      newest = load_newest_valid_checkpoint(dir, &warnings, &path);
      for (const std::string& w : warnings) print_line("ddpm: warning: " + w);
      if (newest) {
        chosen = path.string();
      } else if (!list_checkpoints(dir).empty()) {
        // Starting from scratch here would bury the old run under new checkpoints: refuse.
        error = "run directory " + dir.string() + " holds checkpoints, but none verifies (see the warnings " +
                "above); move them away or choose another run.dir";
      }
    } catch (const std::exception& e) {
      error = "run directory " + dir.string() + ": " + e.what();
    }
  }
  error = mpi_.broadcast_string(error);
  if (!error.empty()) throw std::runtime_error(error);
  chosen = mpi_.broadcast_string(chosen);
  if (!chosen.empty()) {
    // Every rank loads the same file before any collective of training: a rank that fails makes all fail.
    std::string load_error;
    int saved_world = mpi_.world_size();
    try {
      saved_world = state.restore(newest ? *newest : read_checkpoint(chosen), label(), config_.run.dir, mpi_.rank(), device_);
    } catch (const std::exception& e) {
      load_error = "resuming from " + chosen + ": " + e.what();
    }
    // World size 0: no training job wrote it (ddpm import), so there is no run to continue bit-identically.
    if (saved_world != 0 && saved_world != mpi_.world_size() && mpi_.rank() == 0) {
      print_line("ddpm: warning: the checkpoint was written by " + std::to_string(saved_world) + " ranks, this job has " +
                 std::to_string(mpi_.world_size()) + ": the run continues, but not bit-identically to an uninterrupted one");
    }
    mpi_.throw_if_any_failed(load_error, "another rank failed to load " + chosen);
  }
  // Only now, with the run directory known to be this run's, record the resolved config in it.
  if (mpi_.rank() == 0) write_text_atomically(dir / "config.yaml", to_yaml(config_));
  return chosen.empty() ? "from scratch" : "resumed at step " + std::to_string(state.step) + " from " + chosen;
}

CheckpointReceipt Checkpointer::save(const TrainState& state) const {
  const auto started = std::chrono::steady_clock::now();
  const std::string rng = pack_generator_states(device_);
  const Watchdog::Scope armed(watchdog_, "the checkpoint of step " + std::to_string(state.step), 10.0);
  const std::vector<std::string> all_rng = mpi_.gather_to_root(rng);
  std::string written;
  std::string error;
  if (mpi_.rank() == 0) {
    try {
      written = write_checkpoint(config_.run.dir, state.to_checkpoint(label(), all_rng), [this, &state](CheckpointWritePhase phase) {
                  faults_.at_checkpoint_phase(phase, state.step);
                }).string();
      prune_checkpoints(config_.run.dir, config_.train.keep_checkpoints, state.step);
    } catch (const std::exception& e) {
      error = e.what();
    }
  }
  error = mpi_.broadcast_string(error);
  if (!error.empty()) throw std::runtime_error("checkpoint at step " + std::to_string(state.step) + " failed: " + error);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  const std::string size = mpi_.broadcast_string(written.empty() ? "0" : std::to_string(fs::file_size(written)));
  return {seconds, std::stod(size)};
}

}  // namespace ddpm
