// Communicator over MPI for CPU tensors (what multi-rank tests run on, with no GPU).
#pragma once
#include "distributed/communicator.h"

namespace ddpm {

class MpiCommunicator final : public Communicator {
 public:
  explicit MpiCommunicator(const MpiContext& mpi);
  CommBackend backend() const override { return CommBackend::kMpi; }
  int rank() const override { return rank_; }
  int world_size() const override { return world_size_; }
  void all_reduce_sum(torch::Tensor& tensor) override;
  void broadcast(torch::Tensor& tensor, int root) override;
  void synchronize() override {}

 private:
  MPI_Comm comm_;
  int rank_;
  int world_size_;
};

}  // namespace ddpm
