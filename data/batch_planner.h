// Turns the endless walk over this rank's shards into batch plans: which images, flipped or not, and the state
// after. Cheap (no pixels), so the loader plans in order under its lock and decodes in parallel outside it.
#pragma once
#include <cstdint>
#include <vector>

#include "data/loader_state.h"
#include "data/shard_sampler.h"

namespace ddpm {

struct BatchPlan {
  int64_t sequence = 0;          // 0, 1, 2, ... from the loader's start state
  LoaderState start;             // the state before this batch
  LoaderState after;             // the state after this batch
  std::vector<int64_t> indices;  // data set indices
  std::vector<uint8_t> flips;    // 1 = mirror horizontally
};

// Whether the image at data set index `index` is mirrored in `epoch`: a hash of (seed, epoch, index), so it does
// not depend on thread count, batch size or rank.
bool flip_decision(uint64_t seed, int64_t epoch, int64_t index);

class BatchPlanner {
 public:
  // Throws DataError for a bad shard spec, a batch size < 1 or a start state outside the shard.
  BatchPlanner(ShardSpec shard, int64_t batch_size, bool random_flip, LoaderState start);

  BatchPlan next();
  int64_t shard_size() const { return shard_size_; }
  int64_t next_sequence() const { return sequence_; }

 private:
  void enter_epoch(int64_t epoch);

  ShardSpec shard_;
  int64_t batch_size_;
  bool random_flip_;
  int64_t shard_size_;
  LoaderState state_;
  int64_t sequence_ = 0;
  std::vector<int64_t> current_;  // this rank's shard for state_.epoch
};

}  // namespace ddpm
