// Communicator over NCCL for CUDA tensors, bootstrapped over MPI (rank 0's unique id broadcast, then
// ncclCommInitRank), as llm.c does. Collectives run on a dedicated stream that is ordered against the
// caller's compute stream with CUDA events, so the host never waits per collective.
#pragma once
#ifdef DDPM_WITH_CUDA
#include <c10/cuda/CUDAStream.h>
#include <cuda_runtime.h>
#include <nccl.h>

#include <atomic>

#include "distributed/communicator.h"

namespace ddpm {

class NcclCommunicator final : public Communicator {
 public:
  NcclCommunicator(const MpiContext& mpi, const torch::Device& device);
  ~NcclCommunicator() override;
  NcclCommunicator(const NcclCommunicator&) = delete;
  NcclCommunicator& operator=(const NcclCommunicator&) = delete;

  CommBackend backend() const override { return CommBackend::kNccl; }
  int rank() const override { return rank_; }
  int world_size() const override { return world_size_; }
  void all_reduce_sum(torch::Tensor& tensor) override;
  void broadcast(torch::Tensor& tensor, int root) override;
  void synchronize() override;
  void check_async_error() override;
  void abort() override;

 private:
  // Makes the comm stream wait for work queued so far on the compute stream, and vice versa after.
  void begin_collective();
  void end_collective();
  void check_tensor(const torch::Tensor& tensor, const char* op) const;

  int rank_;
  int world_size_;
  torch::Device device_;
  ncclComm_t comm_ = nullptr;
  std::atomic<bool> aborted_{false};
  c10::cuda::CUDAStream comm_stream_;
  cudaEvent_t compute_ready_ = nullptr;
  cudaEvent_t comm_done_ = nullptr;
};

}  // namespace ddpm
#endif  // DDPM_WITH_CUDA
