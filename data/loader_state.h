// Where a loader stands in its endless stream; the checkpoint stores it so that a resumed run sees the same batches.
#pragma once
#include <cstdint>

namespace ddpm {

struct LoaderState {
  int64_t epoch = 0;     // which permutation
  int64_t position = 0;  // the next index within this rank's shard, 0 <= position < shard length

  bool operator==(const LoaderState& other) const { return epoch == other.epoch && position == other.position; }
  bool operator!=(const LoaderState& other) const { return !(*this == other); }
};

}  // namespace ddpm
