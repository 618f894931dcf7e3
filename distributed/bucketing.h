// Gradient synchronization for data parallelism, as PyTorch's DDP does it: gradients are packed into buckets in
// the order they become ready during backward, and each bucket's all-reduce starts (from an autograd hook) as
// soon as its last gradient is ready, so communication overlaps the rest of backward. Buckets launch strictly
// in bucket order on every rank (the same layout everywhere), and gradients are averaged over the world.
// A bucket holds its gradients in their parameters' memory order, so filling it is one concatenation and, after
// the all-reduce, each .grad() becomes a view of its slot (DDP's gradient_as_bucket_view): a few operations per
// bucket, not two per parameter, which on a GPU are kernel launches.
#pragma once
#include <torch/torch.h>

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

#include "distributed/communicator.h"

namespace ddpm {

// Parameter indices per bucket: walk `order` (the ready order), closing a bucket when it reaches its byte
// limit (first_bucket_bytes for the first, bucket_bytes after). A parameter is never split.
std::vector<std::vector<size_t>> make_bucket_layout(const std::vector<torch::Tensor>& params,
                                                    const std::vector<size_t>& order, int64_t bucket_bytes,
                                                    int64_t first_bucket_bytes);

struct SyncStats {
  double exposed_seconds = 0.0;  // waited after backward returned: communication not hidden by compute
  double total_seconds = 0.0;    // from the first bucket's launch to the last one's completion
  int64_t bytes = 0;             // reduced by this rank in the step
  int64_t buckets = 0;
};

class GradientSynchronizer {
 public:
  // params: the model's parameters (all ranks, same order). The layout starts in reverse parameter order (how
  // backward roughly produces them) and is rebuilt once, after the first synchronized step, in the order the
  // gradients actually became ready on rank 0, broadcast so that every rank uses it.
  GradientSynchronizer(std::vector<torch::Tensor> params, Communicator& comm, int64_t bucket_bytes,
                       int64_t first_bucket_bytes);
  ~GradientSynchronizer();
  GradientSynchronizer(const GradientSynchronizer&) = delete;
  GradientSynchronizer& operator=(const GradientSynchronizer&) = delete;

  // Call before the backward whose gradients are to be synchronized (the last micro-batch). Backward passes
  // without it accumulate locally with no communication.
  void begin();
  // Call after that backward: launches what is left, waits for every bucket, and points each .grad() at its
  // averaged slot (a view with the parameter's strides, valid until the next begin()). Rethrows a communication
  // error. Gradients are expected to be reset (undefined) before the next synchronized backward, as
  // zero_grad(set_to_none) does; one accumulated into its slot in place still syncs correctly.
  SyncStats finish();

 private:
  using Clock = std::chrono::steady_clock;
  struct Bucket {
    std::vector<size_t> params;
    std::vector<int64_t> offsets;  // of each parameter in buffer
    torch::Tensor buffer;
    size_t unready = 0;   // parameters whose gradient is not complete yet in this backward
    bool packed = false;  // every gradient copied in (and scaled): the bucket may launch
  };

  void build_buckets(const std::vector<std::vector<size_t>>& layout);
  void on_gradient_ready(size_t param);  // autograd thread (and finish(), for parameters without a gradient)
  void pack(Bucket& bucket) const;       // the gradients into the buffer, divided by the world size
  torch::Tensor memory_order_gradient(size_t param) const;
  void launch_ready_buckets_locked();    // in bucket order
  void communicate(size_t bucket);       // the collective for one bucket
  void comm_loop();                      // MPI: a thread runs the blocking collectives in order
  void rebuild_from_ready_order();

  std::vector<torch::Tensor> params_;
  Communicator& comm_;
  const int64_t bucket_bytes_;
  const int64_t first_bucket_bytes_;
  const bool async_thread_;  // MPI backend: collectives on comm_thread_; NCCL: enqueued inline (asynchronous)
  std::vector<Bucket> buckets_;
  std::vector<size_t> bucket_of_;  // param → bucket
  std::vector<std::shared_ptr<torch::autograd::Node>> accumulators_;  // kept alive: the hooks hang on them
  std::vector<uintptr_t> hook_keys_;

  std::mutex mutex_;
  std::condition_variable work_cv_;
  std::condition_variable done_cv_;
  bool active_ = false;
  bool rebuilt_ = false;
  std::vector<bool> ready_;
  std::vector<size_t> ready_order_;
  size_t next_launch_ = 0;
  size_t completed_ = 0;
  std::deque<size_t> queue_;
  std::exception_ptr error_;
  bool stopping_ = false;
  Clock::time_point first_launch_;
  Clock::time_point last_complete_;
  std::thread comm_thread_;
};

}  // namespace ddpm
