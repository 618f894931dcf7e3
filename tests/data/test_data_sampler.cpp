// The portable PRNG, the per-epoch permutation, the rank shards (drop/wrap) and the batch planner's walk.
#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <set>

#include "data/batch_planner.h"
#include "data/data_error.h"
#include "data/shard_sampler.h"
#include "data/splitmix64.h"

namespace {

using ddpm::ShardSpec;
using ddpm::ShardTail;

TEST(SplitMix64, MatchesTheReferenceSequence) {
  // Vigna's splitmix64.c seeded with 1234567.
  ddpm::SplitMix64 rng(1234567);
  EXPECT_EQ(rng.next(), 6457827717110365317ULL);
  EXPECT_EQ(rng.next(), 3203168211198807973ULL);
  EXPECT_EQ(rng.next(), 9817491932198370423ULL);
}

TEST(SplitMix64, BelowIsInRangeAndUniform) {
  ddpm::SplitMix64 rng(7);
  std::vector<int> counts(3, 0);
  for (int i = 0; i < 30000; ++i) {
    const uint64_t r = rng.below(3);
    ASSERT_LT(r, 3u);
    ++counts[r];
  }
  for (int c : counts) EXPECT_NEAR(c, 10000, 400);  // ~5 standard deviations
  for (int i = 0; i < 100; ++i) EXPECT_EQ(rng.below(1), 0u);
}

TEST(EpochPermutation, IsAPermutationDeterminedBySeedAndEpoch) {
  const std::vector<int64_t> p = ddpm::epoch_permutation(1000, 5, 3);
  std::vector<int64_t> sorted = p;
  std::sort(sorted.begin(), sorted.end());
  for (int64_t i = 0; i < 1000; ++i) ASSERT_EQ(sorted[i], i);
  EXPECT_EQ(p, ddpm::epoch_permutation(1000, 5, 3));
  EXPECT_NE(p, ddpm::epoch_permutation(1000, 5, 4));
  EXPECT_NE(p, ddpm::epoch_permutation(1000, 6, 3));
}

TEST(EpochPermutation, IsPinnedAcrossPlatforms) {
  // Fixed values: a change here changes every run's data order and breaks resuming old checkpoints.
  EXPECT_EQ(ddpm::epoch_permutation(10, 0, 0), (std::vector<int64_t>{8, 2, 0, 7, 3, 6, 1, 9, 5, 4}));
  EXPECT_EQ(ddpm::epoch_permutation(10, 0, 1), (std::vector<int64_t>{0, 4, 9, 7, 2, 3, 5, 8, 1, 6}));
}

TEST(EpochPermutation, FirstPositionIsRoughlyUniform) {
  std::vector<int> counts(4, 0);
  for (int64_t epoch = 0; epoch < 4000; ++epoch) ++counts[ddpm::epoch_permutation(4, 11, epoch)[0]];
  for (int c : counts) EXPECT_NEAR(c, 1000, 150);
}

TEST(ShardTail, Parses) {
  EXPECT_EQ(ddpm::parse_shard_tail("drop"), ShardTail::kDrop);
  EXPECT_EQ(ddpm::parse_shard_tail("wrap"), ShardTail::kWrap);
  EXPECT_THROW(ddpm::parse_shard_tail("pad"), ddpm::DataError);
}

// Every index seen across all ranks in one epoch, with multiplicity.
std::map<int64_t, int> seen_by_all_ranks(int64_t n, int64_t world, ShardTail tail, int64_t epoch,
                                         std::set<size_t>* lengths) {
  std::map<int64_t, int> seen;
  for (int64_t rank = 0; rank < world; ++rank) {
    const std::vector<int64_t> shard = ddpm::epoch_shard(ShardSpec{n, rank, world, tail, 42}, epoch);
    lengths->insert(shard.size());
    for (int64_t index : shard) ++seen[index];
  }
  return seen;
}

TEST(Shards, DropCoversEachImageAtMostOnceWithEqualLengths) {
  for (int64_t world = 1; world <= 8; ++world) {
    for (int64_t n : {1, 2, 3, 5, 7, 8, 9, 13, 64, 100}) {
      if (n < world) continue;
      SCOPED_TRACE("N=" + std::to_string(n) + " W=" + std::to_string(world));
      std::set<size_t> lengths;
      const auto seen = seen_by_all_ranks(n, world, ShardTail::kDrop, 2, &lengths);
      ASSERT_EQ(lengths.size(), 1u);
      EXPECT_EQ(static_cast<int64_t>(*lengths.begin()), n / world);
      EXPECT_EQ(static_cast<int64_t>(seen.size()), (n / world) * world);  // distinct images
      for (const auto& [index, count] : seen) {
        EXPECT_EQ(count, 1) << "index " << index;
        EXPECT_GE(index, 0);
        EXPECT_LT(index, n);
      }
    }
  }
}

TEST(Shards, WrapCoversEveryImageWithEqualLengths) {
  for (int64_t world = 1; world <= 8; ++world) {
    for (int64_t n : {1, 2, 3, 5, 7, 8, 9, 13, 64, 100}) {
      SCOPED_TRACE("N=" + std::to_string(n) + " W=" + std::to_string(world));
      std::set<size_t> lengths;
      const auto seen = seen_by_all_ranks(n, world, ShardTail::kWrap, 2, &lengths);
      ASSERT_EQ(lengths.size(), 1u);
      const int64_t length = (n + world - 1) / world;
      EXPECT_EQ(static_cast<int64_t>(*lengths.begin()), length);
      EXPECT_EQ(static_cast<int64_t>(seen.size()), n);  // every image
      int total = 0;
      for (const auto& [index, count] : seen) {
        total += count;
        // Padding repeats the start of the permutation: at most ceil(W / N) + 1 visits of one image.
        EXPECT_LE(count, 1 + (world + n - 1) / n);
      }
      EXPECT_EQ(total, length * world);
      if (n % world == 0) {
        for (const auto& entry : seen) EXPECT_EQ(entry.second, 1);
      }
    }
  }
}

TEST(Shards, DropWithFewerImagesThanRanksIsAClearError) {
  try {
    ddpm::epoch_shard(ShardSpec{3, 0, 4, ShardTail::kDrop, 0}, 0);
    FAIL() << "expected DataError";
  } catch (const ddpm::DataError& e) {
    EXPECT_NE(std::string(e.what()).find("3 images, fewer than the 4 ranks"), std::string::npos) << e.what();
  }
  EXPECT_THROW(ddpm::shard_length(ShardSpec{0, 0, 1, ShardTail::kWrap, 0}), ddpm::DataError);
  EXPECT_THROW(ddpm::shard_length(ShardSpec{10, 2, 2, ShardTail::kWrap, 0}), ddpm::DataError);
}

TEST(Shards, DropLeavesOutDifferentImagesEachEpoch) {
  std::set<int64_t> ever;
  for (int64_t epoch = 0; epoch < 20; ++epoch) {
    for (int64_t rank = 0; rank < 3; ++rank) {
      for (int64_t index : ddpm::epoch_shard(ShardSpec{10, rank, 3, ShardTail::kDrop, 1}, epoch)) ever.insert(index);
    }
  }
  EXPECT_EQ(ever.size(), 10u);
}

TEST(BatchPlanner, WalksTheShardAcrossEpochBoundaries) {
  const ShardSpec spec{10, 0, 1, ShardTail::kDrop, 9};
  ddpm::BatchPlanner planner(spec, 4, false, {});
  const std::vector<int64_t> e0 = ddpm::epoch_shard(spec, 0), e1 = ddpm::epoch_shard(spec, 1);
  const ddpm::BatchPlan b0 = planner.next(), b1 = planner.next(), b2 = planner.next();
  EXPECT_EQ(b0.indices, std::vector<int64_t>(e0.begin(), e0.begin() + 4));
  EXPECT_EQ(b1.indices, std::vector<int64_t>(e0.begin() + 4, e0.begin() + 8));
  EXPECT_EQ(b2.indices, (std::vector<int64_t>{e0[8], e0[9], e1[0], e1[1]}));
  EXPECT_EQ(b0.after, (ddpm::LoaderState{0, 4}));
  EXPECT_EQ(b1.after, (ddpm::LoaderState{0, 8}));
  EXPECT_EQ(b2.after, (ddpm::LoaderState{1, 2}));
  EXPECT_EQ(b2.start, (ddpm::LoaderState{0, 8}));
  EXPECT_EQ(b2.sequence, 2);
  EXPECT_EQ(b0.flips, std::vector<uint8_t>(4, 0));
}

TEST(BatchPlanner, BatchLargerThanTheShardSpansEpochs) {
  const ShardSpec spec{3, 1, 2, ShardTail::kWrap, 0};  // shard length 2
  ddpm::BatchPlanner planner(spec, 5, false, {});
  const ddpm::BatchPlan plan = planner.next();
  ASSERT_EQ(plan.indices.size(), 5u);
  EXPECT_EQ(plan.indices[0], ddpm::epoch_shard(spec, 0)[0]);
  EXPECT_EQ(plan.indices[2], ddpm::epoch_shard(spec, 1)[0]);
  EXPECT_EQ(plan.indices[4], ddpm::epoch_shard(spec, 2)[0]);
  EXPECT_EQ(plan.after, (ddpm::LoaderState{2, 1}));
}

TEST(BatchPlanner, RejectsStatesOutsideTheShardAndBadBatchSizes) {
  const ShardSpec spec{10, 0, 2, ShardTail::kDrop, 0};  // shard length 5
  EXPECT_THROW(ddpm::BatchPlanner(spec, 4, false, {0, 5}), ddpm::DataError);
  EXPECT_THROW(ddpm::BatchPlanner(spec, 4, false, {-1, 0}), ddpm::DataError);
  EXPECT_THROW(ddpm::BatchPlanner(spec, 0, false, {}), ddpm::DataError);
  EXPECT_NO_THROW(ddpm::BatchPlanner(spec, 4, false, {3, 4}));
}

TEST(FlipDecision, IsDeterministicAndAboutHalf) {
  int flipped = 0;
  for (int64_t index = 0; index < 10000; ++index) {
    const bool flip = ddpm::flip_decision(3, 1, index);
    ASSERT_EQ(flip, ddpm::flip_decision(3, 1, index));
    flipped += flip;
  }
  EXPECT_NEAR(flipped, 5000, 250);
  int same_next_epoch = 0;
  for (int64_t index = 0; index < 10000; ++index) {
    same_next_epoch += ddpm::flip_decision(3, 1, index) == ddpm::flip_decision(3, 2, index);
  }
  EXPECT_NEAR(same_next_epoch, 5000, 250);  // epochs decide independently
}

TEST(BatchPlanner, FlipsFollowTheImageNotTheBatchLayout) {
  const ShardSpec spec{50, 0, 1, ShardTail::kDrop, 4};
  ddpm::BatchPlanner planner(spec, 7, true, {});
  for (int b = 0; b < 10; ++b) {
    const ddpm::BatchPlan plan = planner.next();
    for (size_t i = 0; i < plan.indices.size(); ++i) {
      const int64_t epoch =
          plan.start.position + static_cast<int64_t>(i) >= 50 ? plan.start.epoch + 1 : plan.start.epoch;
      EXPECT_EQ(plan.flips[i], ddpm::flip_decision(4, epoch, plan.indices[i]) ? 1 : 0);
    }
  }
}

}  // namespace
