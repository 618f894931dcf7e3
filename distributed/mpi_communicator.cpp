#include "distributed/mpi_communicator.h"

#include <limits>

namespace ddpm {
namespace {

MPI_Datatype mpi_type(const torch::Tensor& tensor) {
  switch (tensor.scalar_type()) {
    case torch::kFloat32: return MPI_FLOAT;
    case torch::kFloat64: return MPI_DOUBLE;
    case torch::kInt32: return MPI_INT32_T;
    case torch::kInt64: return MPI_INT64_T;
    case torch::kUInt8: return MPI_UINT8_T;
    default:
      throw std::invalid_argument(std::string("MPI communicator: unsupported dtype ") +
                                  c10::toString(tensor.scalar_type()) + " (use float32, float64, int32, int64 or uint8)");
  }
}

void check_tensor(const torch::Tensor& tensor, const char* op) {
  if (!tensor.device().is_cpu() || !tensor.is_contiguous()) {
    throw std::invalid_argument(std::string("MPI communicator ") + op + ": needs a contiguous CPU tensor, got " +
                                tensor.device().str() + (tensor.is_contiguous() ? "" : " (non-contiguous)"));
  }
  if (tensor.numel() > std::numeric_limits<int>::max()) {
    throw std::invalid_argument(std::string("MPI communicator ") + op + ": tensor of " +
                                std::to_string(tensor.numel()) + " elements exceeds MPI's int count");
  }
}

}  // namespace

MpiCommunicator::MpiCommunicator(const MpiContext& mpi)
    : comm_(mpi.comm()), rank_(mpi.rank()), world_size_(mpi.world_size()) {}

void MpiCommunicator::all_reduce_sum(torch::Tensor& tensor) {
  check_tensor(tensor, "all_reduce_sum");
  check_mpi(MPI_Allreduce(MPI_IN_PLACE, tensor.data_ptr(), static_cast<int>(tensor.numel()), mpi_type(tensor), MPI_SUM,
                          comm_),
            "MPI_Allreduce");
}

void MpiCommunicator::broadcast(torch::Tensor& tensor, int root) {
  check_tensor(tensor, "broadcast");
  check_mpi(MPI_Bcast(tensor.data_ptr(), static_cast<int>(tensor.numel()), mpi_type(tensor), root, comm_), "MPI_Bcast");
}

}  // namespace ddpm
