#include "data/data_loader.h"

#include "data/data_error.h"

namespace ddpm {
namespace {

ShardSpec shard_spec(const ImageDataset& dataset, const LoaderOptions& options) {
  return ShardSpec{dataset.size(), options.rank, options.world_size, options.shard_tail, options.seed};
}

const ImageDataset& checked(const std::shared_ptr<const ImageDataset>& dataset) {
  if (!dataset || !dataset->images.defined() || dataset->images.dim() != 4 ||
      dataset->images.scalar_type() != torch::kUInt8 || !dataset->images.is_contiguous()) {
    throw DataError("the data loader needs a data set of contiguous uint8 [N, C, H, W] images");
  }
  return *dataset;
}

std::string describe(const BatchPlan& plan) {
  return "batch " + std::to_string(plan.sequence) + " (epoch " + std::to_string(plan.start.epoch) +
         ", shard position " + std::to_string(plan.start.position) + ")";
}

}  // namespace

DataLoader::DataLoader(std::shared_ptr<const ImageDataset> dataset, LoaderOptions options, LoaderState start)
    : dataset_(std::move(dataset)), options_(std::move(options)), transfer_(options_.device),
      planner_(shard_spec(checked(dataset_), options_), options_.batch_size, options_.random_flip, start),
      state_(start) {
  if (options_.threads < 1) {
    throw DataError("loader_threads must be at least 1, got " + std::to_string(options_.threads));
  }
  if (options_.prefetch_batches < 1) {
    throw DataError("prefetch_batches must be at least 1, got " + std::to_string(options_.prefetch_batches));
  }
  if (!options_.collate_fn) {
    throw DataError("the data loader needs a collate function");
  }
  shard_size_ = planner_.shard_size();
  try {
    for (int64_t i = 0; i < options_.threads; ++i) workers_.emplace_back([this] { work(); });
  } catch (...) {
    stop_workers();
    throw;
  }
}

DataLoader::~DataLoader() { stop_workers(); }

void DataLoader::stop_workers() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  space_.notify_all();
  for (std::thread& worker : workers_) {
    if (worker.joinable()) worker.join();
  }
}

void DataLoader::work() {
  while (true) {
    BatchPlan plan;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      space_.wait(lock, [this] {
        return stopping_ || error_ || planner_.next_sequence() < next_out_ + options_.prefetch_batches;
      });
      if (stopping_ || error_) return;
      plan = planner_.next();
    }
    try {
      Batch batch = options_.collate_fn(*dataset_, plan);
      if (transfer_.wants_pinned_memory()) {
        batch.images = batch.images.pin_memory();
        batch.labels = batch.labels.pin_memory();
        batch.indices = batch.indices.pin_memory();
      }
      {
        std::lock_guard<std::mutex> lock(mutex_);
        done_.emplace(plan.sequence, std::move(batch));
      }
      ready_.notify_all();
    } catch (const std::exception& e) {
      fail("data loader worker failed on " + describe(plan) + " of " + dataset_->source + ": " + e.what());
      return;
    } catch (...) {
      fail("data loader worker failed on " + describe(plan) + " of " + dataset_->source + ": unknown exception");
      return;
    }
  }
}

void DataLoader::fail(const std::string& message) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (!error_) error_ = std::make_exception_ptr(DataError(message));
  }
  // Wake the consumer to rethrow and the other workers to stop.
  ready_.notify_all();
  space_.notify_all();
}

Batch DataLoader::next() {
  Batch batch;
  {
    std::unique_lock<std::mutex> lock(mutex_);
    ready_.wait(lock, [this] { return error_ || done_.count(next_out_) > 0; });
    if (error_) std::rethrow_exception(error_);
    auto slot = done_.find(next_out_);
    batch = std::move(slot->second);
    done_.erase(slot);
    ++next_out_;
    state_ = batch.after;
  }
  space_.notify_all();
  return transfer_.to_device(std::move(batch));
}

LoaderState DataLoader::state() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return state_;
}

}  // namespace ddpm
