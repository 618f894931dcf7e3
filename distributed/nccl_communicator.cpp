#ifdef DDPM_WITH_CUDA
#include "distributed/nccl_communicator.h"

#include <c10/cuda/CUDAGuard.h>

#include <chrono>
#include <stdexcept>
#include <string>
#include <thread>

namespace ddpm {
namespace {

void check_nccl(ncclResult_t result, const char* what) {
  if (result != ncclSuccess) {
    throw std::runtime_error(std::string(what) + " failed: " + ncclGetErrorString(result) + " (" +
                             ncclGetLastError(nullptr) + ")");
  }
}

void check_cuda(cudaError_t result, const char* what) {
  if (result != cudaSuccess) throw std::runtime_error(std::string(what) + " failed: " + cudaGetErrorString(result));
}

ncclDataType_t nccl_type(const torch::Tensor& tensor) {
  switch (tensor.scalar_type()) {
    case torch::kFloat32: return ncclFloat32;
    case torch::kFloat64: return ncclFloat64;
    case torch::kFloat16: return ncclFloat16;
    case torch::kBFloat16: return ncclBfloat16;
    case torch::kInt32: return ncclInt32;
    case torch::kInt64: return ncclInt64;
    case torch::kUInt8: return ncclUint8;
    default:
      throw std::invalid_argument(std::string("NCCL communicator: unsupported dtype ") +
                                  c10::toString(tensor.scalar_type()));
  }
}

}  // namespace

NcclCommunicator::NcclCommunicator(const MpiContext& mpi, const torch::Device& device)
    : rank_(mpi.rank()),
      world_size_(mpi.world_size()),
      device_(device),
      comm_stream_(c10::cuda::getStreamFromPool(/*isHighPriority=*/true, device.index())) {
  if (!device.is_cuda()) throw std::invalid_argument("NCCL communicator needs a CUDA device, got " + device.str());
  const c10::cuda::CUDAGuard guard(device);
  ncclUniqueId id;
  if (rank_ == 0) check_nccl(ncclGetUniqueId(&id), "ncclGetUniqueId");
  check_mpi(MPI_Bcast(&id, sizeof(id), MPI_BYTE, 0, mpi.comm()), "MPI_Bcast of the NCCL unique id");
  check_nccl(ncclCommInitRank(&comm_, world_size_, id, rank_), "ncclCommInitRank");
  check_cuda(cudaEventCreateWithFlags(&compute_ready_, cudaEventDisableTiming), "cudaEventCreate");
  check_cuda(cudaEventCreateWithFlags(&comm_done_, cudaEventDisableTiming), "cudaEventCreate");
}

NcclCommunicator::~NcclCommunicator() {
  if (compute_ready_ != nullptr) cudaEventDestroy(compute_ready_);
  if (comm_done_ != nullptr) cudaEventDestroy(comm_done_);
  if (comm_ != nullptr && !aborted_) ncclCommDestroy(comm_);
}

void NcclCommunicator::abort() {
  if (comm_ != nullptr && !aborted_.exchange(true)) ncclCommAbort(comm_);
}

void NcclCommunicator::check_tensor(const torch::Tensor& tensor, const char* op) const {
  if (tensor.device() != device_ || !tensor.is_contiguous()) {
    throw std::invalid_argument(std::string("NCCL communicator ") + op + ": needs a contiguous tensor on " +
                                device_.str() + ", got " + tensor.device().str());
  }
}

void NcclCommunicator::begin_collective() {
  const cudaStream_t compute = c10::cuda::getCurrentCUDAStream(device_.index()).stream();
  check_cuda(cudaEventRecord(compute_ready_, compute), "cudaEventRecord");
  check_cuda(cudaStreamWaitEvent(comm_stream_.stream(), compute_ready_, 0), "cudaStreamWaitEvent");
}

void NcclCommunicator::end_collective() {
  const cudaStream_t compute = c10::cuda::getCurrentCUDAStream(device_.index()).stream();
  check_cuda(cudaEventRecord(comm_done_, comm_stream_.stream()), "cudaEventRecord");
  check_cuda(cudaStreamWaitEvent(compute, comm_done_, 0), "cudaStreamWaitEvent");
}

void NcclCommunicator::all_reduce_sum(torch::Tensor& tensor) {
  check_tensor(tensor, "all_reduce_sum");
  const c10::cuda::CUDAGuard guard(device_);
  begin_collective();
  // The caching allocator must not reuse this memory before the comm stream is done with it.
  tensor.record_stream(comm_stream_);
  check_nccl(ncclAllReduce(tensor.data_ptr(), tensor.data_ptr(), static_cast<size_t>(tensor.numel()), nccl_type(tensor),
                           ncclSum, comm_, comm_stream_.stream()),
             "ncclAllReduce");
  end_collective();
}

void NcclCommunicator::broadcast(torch::Tensor& tensor, int root) {
  check_tensor(tensor, "broadcast");
  const c10::cuda::CUDAGuard guard(device_);
  begin_collective();
  tensor.record_stream(comm_stream_);
  check_nccl(ncclBroadcast(tensor.data_ptr(), tensor.data_ptr(), static_cast<size_t>(tensor.numel()), nccl_type(tensor),
                           root, comm_, comm_stream_.stream()),
             "ncclBroadcast");
  end_collective();
}

void NcclCommunicator::synchronize() {
  // Poll instead of cudaStreamSynchronize: NCCL never times out by itself, and an asynchronous error (a peer
  // gone, a network failure) only shows through ncclCommGetAsyncError.
  while (true) {
    const cudaError_t state = cudaStreamQuery(comm_stream_.stream());
    if (state == cudaSuccess) return;
    if (state != cudaErrorNotReady) check_cuda(state, "cudaStreamQuery");
    check_async_error();
    std::this_thread::sleep_for(std::chrono::microseconds(100));
  }
}

void NcclCommunicator::check_async_error() {
  ncclResult_t async_error = ncclSuccess;
  check_nccl(ncclCommGetAsyncError(comm_, &async_error), "ncclCommGetAsyncError");
  if (async_error != ncclSuccess) check_nccl(async_error, "a collective (asynchronous error)");
}

}  // namespace ddpm
#endif  // DDPM_WITH_CUDA
