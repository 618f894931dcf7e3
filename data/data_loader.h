// The endless, sharded, prefetched stream of batches the trainer pulls from.
#pragma once
#include <torch/torch.h>

#include <condition_variable>
#include <exception>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "data/batch_planner.h"
#include "data/collate.h"
#include "data/device_transfer.h"
#include "data/image_dataset.h"
#include "data/loader_state.h"
#include "data/shard_sampler.h"

namespace ddpm {

struct LoaderOptions {
  int64_t batch_size = 64;  // per rank
  int64_t rank = 0;
  int64_t world_size = 1;
  uint64_t seed = 0;
  ShardTail shard_tail = ShardTail::kDrop;
  bool random_flip = false;
  int64_t threads = 1;           // workers collating in the background, >= 1
  int64_t prefetch_batches = 4;  // batches planned but not yet consumed, >= 1: bounds the memory
  torch::Device device = torch::kCPU;
  CollateFn collate_fn = collate;
};

// Batch k (counted from the start state) is the same whatever the thread count, and a loader started from the
// state() of another yields exactly the batches the other would have yielded next.
class DataLoader {
 public:
  // Throws DataError for bad options or a start state outside the shard.
  DataLoader(std::shared_ptr<const ImageDataset> dataset, LoaderOptions options, LoaderState start = {});
  // Stops and joins the workers; safe mid-stream and after a worker failed.
  ~DataLoader();
  DataLoader(const DataLoader&) = delete;
  DataLoader& operator=(const DataLoader&) = delete;

  // The next batch, on options.device. Rethrows a worker's failure as DataError with its batch and state.
  Batch next();
  // The state after the last batch next() returned (the start state before the first).
  LoaderState state() const;
  // How many images this rank visits per epoch.
  int64_t shard_size() const { return shard_size_; }

 private:
  void work();
  void stop_workers();
  void fail(const std::string& message);

  std::shared_ptr<const ImageDataset> dataset_;
  LoaderOptions options_;
  DeviceTransfer transfer_;
  int64_t shard_size_ = 0;

  mutable std::mutex mutex_;
  std::condition_variable space_;  // a worker may plan another batch, or must stop
  std::condition_variable ready_;  // a batch or an error arrived
  BatchPlanner planner_;           // guarded by mutex_
  std::map<int64_t, Batch> done_;  // collated batches by sequence, waiting for their turn
  int64_t next_out_ = 0;           // the sequence next() hands out next
  LoaderState state_;
  std::exception_ptr error_;
  bool stopping_ = false;
  std::vector<std::thread> workers_;
};

}  // namespace ddpm
