// Collective communication between the ranks of a data-parallel job. Two backends: MPI for CPU tensors
// and NCCL for CUDA tensors (compiled when the CUDA toolkit and NCCL are found).
#pragma once
#include <torch/torch.h>

#include <memory>
#include <string>

#include "distributed/comm_backend.h"
#include "distributed/mpi_context.h"

namespace ddpm {


class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual CommBackend backend() const = 0;
  virtual int rank() const = 0;
  virtual int world_size() const = 0;
  // In-place sum over all ranks. The tensor must be contiguous and on the backend's device.
  virtual void all_reduce_sum(torch::Tensor& tensor) = 0;
  // In-place broadcast of root's tensor to every rank.
  virtual void broadcast(torch::Tensor& tensor, int root) = 0;
  // Blocks until every collective issued so far has completed (a host sync; not for the hot path). Throws
  // when the backend reports an asynchronous error (NCCL).
  virtual void synchronize() = 0;
  // Throws when the backend has reported an asynchronous error (a peer gone, a network failure: NCCL); for
  // polling loops that wait on something else. Never blocks.
  virtual void check_async_error() {}
  // Tears the communicator down so that collectives stuck in it return (ncclCommAbort); called by the watchdog
  // before it aborts the job. Safe from another thread.
  virtual void abort() {}
};

// kAuto picks NCCL for a CUDA device and MPI otherwise. Throws when the backend cannot serve the device.
std::unique_ptr<Communicator> make_communicator(const MpiContext& mpi, CommBackend backend, const torch::Device& device);

// True when this build has the NCCL backend.
bool nccl_available();

}  // namespace ddpm
