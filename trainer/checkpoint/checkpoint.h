// Checkpoint files: one versioned, checksummed file per step in the run directory, written atomically
// (temp file, fsync, rename, fsync of the directory), so a crash at any moment leaves either the previous
// set of checkpoints or the previous set plus the new one, never a half-written file under a final name.
//
// Layout (little-endian):
//   "DDPMCKPT" | u32 format version | u32 metadata length | metadata (JSON text) |
//   u64 payload length | payload (a torch archive of named tensors) | u32 CRC-32 of all bytes before it
#pragma once
#include <torch/torch.h>

#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "trainer/checkpoint/checkpoint_format.h"  // CheckpointError, kCheckpointFormatVersion, parse_checkpoint_header

namespace ddpm {

struct Checkpoint {
  int64_t step = 0;
  std::string metadata;                          // JSON: config, RNG and sampler state, anything small
  std::map<std::string, torch::Tensor> tensors;  // model, EMA and optimizer state by name (CPU)
};

// "ckpt-000001234.ddpm": fixed width so that names sort by step.
std::string checkpoint_file_name(int64_t step);

// The moments of a write at which a crash leaves different files behind; the fault-injection tests kill the
// process at each of them.
enum class CheckpointWritePhase {
  kPartlyWritten,     // half of the temp file's bytes written
  kWrittenAndSynced,  // temp file complete and fsynced, not yet renamed
  kRenamed,           // final name in place, directory not yet fsynced
};
using CheckpointWriteObserver = std::function<void(CheckpointWritePhase)>;

// Writes atomically to dir/checkpoint_file_name(step); returns the final path. Throws CheckpointError
// (disk full, unwritable directory) after removing its temp file; an existing checkpoint is never touched.
// `observer`, when set, is called at each phase.
std::filesystem::path write_checkpoint(const std::filesystem::path& dir, const Checkpoint& checkpoint,
                                       const CheckpointWriteObserver& observer = {});

// Reads and verifies (magic, version, lengths against the file size, CRC). Throws CheckpointError naming
// the file and what is wrong (with the byte offset where it applies).
Checkpoint read_checkpoint(const std::filesystem::path& path);

// The committed checkpoint files of dir, newest step first (names only; not verified).
std::vector<std::filesystem::path> list_checkpoints(const std::filesystem::path& dir);

// The newest checkpoint that verifies. Corrupt newer ones are skipped, each reported through `warnings`.
// nullopt when there is none.
std::optional<Checkpoint> load_newest_valid_checkpoint(const std::filesystem::path& dir,
                                                       std::vector<std::string>* warnings,
                                                       std::filesystem::path* loaded_path = nullptr);

// Removes the temp files of interrupted writes. Only the process that owns the run directory (the trainer,
// at start, before it writes) may call this: a reader doing it could delete a write in progress.
void remove_interrupted_writes(const std::filesystem::path& dir);

// Deletes all but the newest `keep` committed checkpoints among those of step ≤ current_step (the one just
// written included). Files of later steps are ones that failed to verify at start: left for the user to inspect.
void prune_checkpoints(const std::filesystem::path& dir, int64_t keep, int64_t current_step);

}  // namespace ddpm
