#include "data/batch_planner.h"

#include "data/data_error.h"
#include "data/splitmix64.h"

namespace ddpm {

bool flip_decision(uint64_t seed, int64_t epoch, int64_t index) {
  // A different stream from the permutation's: the salt keeps flips uncorrelated with the shuffle.
  constexpr uint64_t kFlipSalt = 0x666c69702d6c7221ULL;
  const uint64_t key = hash_combine(hash_combine(seed ^ kFlipSalt, static_cast<uint64_t>(epoch)),
                                    static_cast<uint64_t>(index));
  return (key >> 63) != 0;
}

BatchPlanner::BatchPlanner(ShardSpec shard, int64_t batch_size, bool random_flip, LoaderState start)
    : shard_(shard), batch_size_(batch_size), random_flip_(random_flip), shard_size_(shard_length(shard)),
      state_(start) {
  if (batch_size < 1) {
    throw DataError("batch size must be at least 1, got " + std::to_string(batch_size));
  }
  if (start.epoch < 0 || start.position < 0 || start.position >= shard_size_) {
    throw DataError("loader state (epoch " + std::to_string(start.epoch) + ", position " +
                    std::to_string(start.position) + ") is outside this rank's shard of " +
                    std::to_string(shard_size_) + " images (was the checkpoint made with another data set, "
                    "world size or shard_tail?)");
  }
  enter_epoch(start.epoch);
}

void BatchPlanner::enter_epoch(int64_t epoch) {
  current_ = epoch_shard(shard_, epoch);
  state_.epoch = epoch;
}

BatchPlan BatchPlanner::next() {
  BatchPlan plan;
  plan.sequence = sequence_++;
  plan.start = state_;
  plan.indices.reserve(static_cast<size_t>(batch_size_));
  plan.flips.reserve(static_cast<size_t>(batch_size_));
  for (int64_t i = 0; i < batch_size_; ++i) {
    const int64_t index = current_[static_cast<size_t>(state_.position)];
    plan.indices.push_back(index);
    plan.flips.push_back(random_flip_ && flip_decision(shard_.seed, state_.epoch, index) ? 1 : 0);
    if (++state_.position == shard_size_) {
      state_.position = 0;
      enter_epoch(state_.epoch + 1);
    }
  }
  plan.after = state_;
  return plan;
}

}  // namespace ddpm
