#include "distributed/communicator.h"

#include <stdexcept>

#include "distributed/mpi_communicator.h"
#ifdef DDPM_WITH_CUDA
#include "distributed/nccl_communicator.h"
#endif

namespace ddpm {

CommBackend parse_comm_backend(const std::string& name) {
  for (const auto& [backend, text] : kCommBackendNames) {
    if (name == text) return backend;
  }
  throw std::invalid_argument("unknown communication backend '" + name + "' (expected auto, mpi or nccl)");
}

std::string to_string(CommBackend backend) {
  for (const auto& [value, text] : kCommBackendNames) {
    if (value == backend) return text;
  }
  return "unknown";
}

bool nccl_available() {
#ifdef DDPM_WITH_CUDA
  return true;
#else
  return false;
#endif
}

std::unique_ptr<Communicator> make_communicator(const MpiContext& mpi, CommBackend backend, const torch::Device& device) {
  const CommBackend chosen = backend != CommBackend::kAuto ? backend : (device.is_cuda() ? CommBackend::kNccl : CommBackend::kMpi);
  if (chosen == CommBackend::kMpi) {
    if (!device.is_cpu()) {
      throw std::invalid_argument("the MPI backend reduces CPU tensors; the model is on " + device.str() +
                                  " (use backend nccl or auto)");
    }
    return std::make_unique<MpiCommunicator>(mpi);
  }
#ifdef DDPM_WITH_CUDA
  return std::make_unique<NcclCommunicator>(mpi, device);
#else
  throw std::invalid_argument("the NCCL backend is not in this build (configured without CUDA/NCCL; rebuild with "
                              "-DDDPM_CUDA=ON on a machine with the CUDA toolkit)");
#endif
}

}  // namespace ddpm
