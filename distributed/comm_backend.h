// Which collective library moves the tensors: NCCL for CUDA tensors, MPI for CPU ones, or the one that fits the
// device (auto). Torch-free: the config includes it.
#pragma once
#include <string>
#include <utility>

namespace ddpm {

enum class CommBackend { kAuto, kMpi, kNccl };
inline constexpr std::pair<CommBackend, const char*> kCommBackendNames[] = {
    {CommBackend::kAuto, "auto"}, {CommBackend::kMpi, "mpi"}, {CommBackend::kNccl, "nccl"}};

// Parses a name of kCommBackendNames; throws std::invalid_argument naming the accepted values.
CommBackend parse_comm_backend(const std::string& name);
std::string to_string(CommBackend backend);

}  // namespace ddpm
