// Which images rank r of W sees in an epoch: a seeded permutation of 0..N-1, made a multiple of W long (drop or
// wrap the tail), then every W-th entry starting at r (PyTorch's DistributedSampler layout).
#pragma once
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace ddpm {

enum class ShardTail {
  kDrop,  // truncate the permutation to floor(N / W) * W; the dropped images differ per epoch
  kWrap,  // pad the permutation to ceil(N / W) * W by repeating its start
};
inline constexpr std::pair<ShardTail, const char*> kShardTailNames[] = {{ShardTail::kDrop, "drop"},
                                                                         {ShardTail::kWrap, "wrap"}};

// "drop" | "wrap". Throws DataError otherwise.
ShardTail parse_shard_tail(const std::string& name);

struct ShardSpec {
  int64_t dataset_size = 0;
  int64_t rank = 0;
  int64_t world_size = 1;
  ShardTail tail = ShardTail::kDrop;
  uint64_t seed = 0;
};

// Throws DataError for an empty data set, a bad rank/world, or drop with fewer images than ranks.
void check_shard_spec(const ShardSpec& spec);

// A uniform permutation of 0..n-1 determined by (seed, epoch): Fisher–Yates over SplitMix64.
std::vector<int64_t> epoch_permutation(int64_t n, uint64_t seed, int64_t epoch);

// The length every rank's shard has (the same on all ranks, so that collectives stay in step).
int64_t shard_length(const ShardSpec& spec);

// The data set indices of this rank's shard in `epoch`, in the order the rank visits them.
std::vector<int64_t> epoch_shard(const ShardSpec& spec, int64_t epoch);

}  // namespace ddpm
