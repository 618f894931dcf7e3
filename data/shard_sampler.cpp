#include "data/shard_sampler.h"

#include <numeric>
#include <utility>

#include "data/data_error.h"
#include "data/splitmix64.h"

namespace ddpm {

ShardTail parse_shard_tail(const std::string& name) {
  for (const auto& [tail, text] : kShardTailNames) {
    if (name == text) return tail;
  }
  throw DataError("unknown shard_tail '" + name + "' (expected drop or wrap)");
}

void check_shard_spec(const ShardSpec& spec) {
  if (spec.dataset_size < 1) {
    throw DataError("cannot shard an empty data set");
  }
  if (spec.world_size < 1 || spec.rank < 0 || spec.rank >= spec.world_size) {
    throw DataError("bad rank " + std::to_string(spec.rank) + " of world size " + std::to_string(spec.world_size));
  }
  if (spec.tail == ShardTail::kDrop && spec.dataset_size < spec.world_size) {
    throw DataError("shard_tail drop: the data set has " + std::to_string(spec.dataset_size) +
                    " images, fewer than the " + std::to_string(spec.world_size) +
                    " ranks, so every shard would be empty (use shard_tail wrap or fewer ranks)");
  }
}

std::vector<int64_t> epoch_permutation(int64_t n, uint64_t seed, int64_t epoch) {
  std::vector<int64_t> order(static_cast<size_t>(n));
  std::iota(order.begin(), order.end(), int64_t{0});
  SplitMix64 rng(hash_combine(seed, static_cast<uint64_t>(epoch)));
  for (int64_t i = n - 1; i > 0; --i) {
    const auto j = static_cast<int64_t>(rng.below(static_cast<uint64_t>(i) + 1));
    std::swap(order[i], order[j]);
  }
  return order;
}

int64_t shard_length(const ShardSpec& spec) {
  check_shard_spec(spec);
  const int64_t n = spec.dataset_size, w = spec.world_size;
  return spec.tail == ShardTail::kDrop ? n / w : (n + w - 1) / w;
}

std::vector<int64_t> epoch_shard(const ShardSpec& spec, int64_t epoch) {
  const int64_t length = shard_length(spec);
  const std::vector<int64_t> order = epoch_permutation(spec.dataset_size, spec.seed, epoch);
  std::vector<int64_t> shard(static_cast<size_t>(length));
  for (int64_t i = 0; i < length; ++i) {
    // Position i * W + r of the permutation truncated (drop) or cyclically extended (wrap) to length * W.
    shard[i] = order[(i * spec.world_size + spec.rank) % spec.dataset_size];
  }
  return shard;
}

}  // namespace ddpm
