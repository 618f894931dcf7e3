// The loader: values and range, order independent of threads, resume from state, ranks, errors and shutdown.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <set>
#include <thread>

#include "data/data_error.h"
#include "data/data_loader.h"
#include "data/pixels.h"

namespace {

// N images of C x H x W whose pixels identify image, channel, row and column (so flips and mix-ups show).
std::shared_ptr<const ddpm::ImageDataset> pattern_dataset(int64_t n, int64_t c = 3, int64_t h = 5, int64_t w = 7) {
  auto dataset = std::make_shared<ddpm::ImageDataset>();
  dataset->images = ((torch::arange(n).view({n, 1, 1, 1}) * 13 + torch::arange(c).view({1, c, 1, 1}) * 50 +
                      torch::arange(h).view({1, 1, h, 1}) * 7 + torch::arange(w).view({1, 1, 1, w}) * 3) %
                     256)
                        .to(torch::kUInt8)
                        .contiguous();
  dataset->labels = torch::arange(n) % 10;
  dataset->source = "pattern";
  return dataset;
}

ddpm::LoaderOptions options(int64_t batch, int64_t threads = 1, bool flip = true) {
  ddpm::LoaderOptions o;
  o.batch_size = batch;
  o.threads = threads;
  o.random_flip = flip;
  o.seed = 17;
  o.prefetch_batches = 3;
  return o;
}

std::vector<ddpm::Batch> take(ddpm::DataLoader& loader, int count) {
  std::vector<ddpm::Batch> batches;
  for (int i = 0; i < count; ++i) batches.push_back(loader.next());
  return batches;
}

void expect_same(const std::vector<ddpm::Batch>& a, const std::vector<ddpm::Batch>& b) {
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_TRUE(torch::equal(a[i].images, b[i].images)) << "batch " << i;
    EXPECT_TRUE(torch::equal(a[i].labels, b[i].labels)) << "batch " << i;
    EXPECT_TRUE(torch::equal(a[i].indices, b[i].indices)) << "batch " << i;
    EXPECT_EQ(a[i].after, b[i].after) << "batch " << i;
  }
}

TEST(DataLoader, BatchesAreTheShuffledImagesScaledAndFlippedExactly) {
  const auto dataset = pattern_dataset(40);
  ddpm::DataLoader loader(dataset, options(8));
  const std::vector<int64_t> shard = ddpm::epoch_shard({40, 0, 1, ddpm::ShardTail::kDrop, 17}, 0);
  int flipped = 0;
  for (int b = 0; b < 5; ++b) {
    const ddpm::Batch batch = loader.next();
    ASSERT_EQ(batch.images.sizes(), (std::vector<int64_t>{8, 3, 5, 7}));
    ASSERT_EQ(batch.images.scalar_type(), torch::kFloat32);
    for (int64_t i = 0; i < 8; ++i) {
      const int64_t index = shard[b * 8 + i];
      ASSERT_EQ(batch.indices[i].item<int64_t>(), index);
      EXPECT_EQ(batch.labels[i].item<int64_t>(), index % 10);
      torch::Tensor expected = dataset->images[index].to(torch::kFloat32) / 127.5 - 1.0;
      if (ddpm::flip_decision(17, 0, index)) {
        expected = expected.flip({2});
        ++flipped;
      }
      EXPECT_TRUE(torch::equal(batch.images[i], expected)) << "image " << index;
    }
  }
  EXPECT_GT(flipped, 5);
  EXPECT_LT(flipped, 35);
  EXPECT_EQ(loader.state(), (ddpm::LoaderState{1, 0}));
}

TEST(DataLoader, MapsZeroToMinusOneAnd255ToPlusOne) {
  auto dataset = std::make_shared<ddpm::ImageDataset>();
  dataset->images =
      torch::cat({torch::zeros({2, 1, 4, 4}, torch::kUInt8), torch::full({2, 1, 4, 4}, 255, torch::kUInt8)});
  dataset->labels = torch::zeros({4}, torch::kInt64);
  ddpm::DataLoader loader(dataset, options(4));
  const ddpm::Batch batch = loader.next();
  EXPECT_EQ(batch.images.min().item<float>(), -1.0f);
  EXPECT_EQ(batch.images.max().item<float>(), 1.0f);
  EXPECT_EQ(batch.images.eq(-1.0f).sum().item<int64_t>(), 32);
  EXPECT_EQ(batch.images.eq(1.0f).sum().item<int64_t>(), 32);
}

TEST(DataLoader, IsEndlessAndReshufflesEachEpoch) {
  const auto dataset = pattern_dataset(30);
  ddpm::DataLoader loader(dataset, options(6, 2));
  std::vector<int64_t> seen;
  for (const ddpm::Batch& batch : take(loader, 10)) {
    for (int64_t i = 0; i < 6; ++i) seen.push_back(batch.indices[i].item<int64_t>());
  }
  const std::vector<int64_t> epoch0(seen.begin(), seen.begin() + 30), epoch1(seen.begin() + 30, seen.end());
  EXPECT_EQ(std::set<int64_t>(epoch0.begin(), epoch0.end()).size(), 30u);
  EXPECT_EQ(std::set<int64_t>(epoch1.begin(), epoch1.end()).size(), 30u);
  EXPECT_NE(epoch0, epoch1);
  EXPECT_EQ(loader.state(), (ddpm::LoaderState{2, 0}));
}

TEST(DataLoader, ThreadCountDoesNotChangeTheBatches) {
  const auto dataset = pattern_dataset(100);
  ddpm::DataLoader one(dataset, options(16, 1));
  ddpm::DataLoader two(dataset, options(16, 2));
  ddpm::DataLoader three(dataset, options(16, 3));
  const std::vector<ddpm::Batch> reference = take(one, 20);
  expect_same(reference, take(two, 20));
  expect_same(reference, take(three, 20));
}

TEST(DataLoader, ResumingFromStateGivesTheSameBatchesBitForBit) {
  const auto dataset = pattern_dataset(50);
  for (int k : {0, 3, 7}) {
    SCOPED_TRACE("k=" + std::to_string(k));
    ddpm::DataLoader uninterrupted(dataset, options(12, 2));
    const std::vector<ddpm::Batch> all = take(uninterrupted, k + 10);
    ddpm::DataLoader first(dataset, options(12, 1));
    take(first, k);
    const ddpm::LoaderState saved = first.state();
    ddpm::DataLoader resumed(dataset, options(12, 2), saved);
    EXPECT_EQ(resumed.state(), saved);
    expect_same(std::vector<ddpm::Batch>(all.begin() + k, all.end()), take(resumed, 10));
  }
}

TEST(DataLoader, RanksSeeDisjointShardsCoveringTheEpoch) {
  const auto dataset = pattern_dataset(50);
  std::multiset<int64_t> seen;
  for (int64_t rank = 0; rank < 3; ++rank) {
    ddpm::LoaderOptions o = options(4, 1);
    o.rank = rank;
    o.world_size = 3;
    ddpm::DataLoader loader(dataset, o);
    EXPECT_EQ(loader.shard_size(), 16);
    for (const ddpm::Batch& batch : take(loader, 4)) {
      for (int64_t i = 0; i < 4; ++i) seen.insert(batch.indices[i].item<int64_t>());
    }
  }
  EXPECT_EQ(seen.size(), 48u);
  EXPECT_EQ(std::set<int64_t>(seen.begin(), seen.end()).size(), 48u);
}

TEST(DataLoader, BadOptionsAreErrors) {
  const auto dataset = pattern_dataset(5);
  auto with = [&](const std::function<void(ddpm::LoaderOptions&)>& change) {
    ddpm::LoaderOptions o = options(4);
    change(o);
    return o;
  };
  EXPECT_THROW(ddpm::DataLoader(dataset, with([](auto& o) { o.threads = 0; })), ddpm::DataError);
  EXPECT_THROW(ddpm::DataLoader(dataset, with([](auto& o) { o.prefetch_batches = 0; })), ddpm::DataError);
  EXPECT_THROW(ddpm::DataLoader(dataset, with([](auto& o) { o.batch_size = 0; })), ddpm::DataError);
  EXPECT_THROW(ddpm::DataLoader(dataset, with([](auto& o) { o.world_size = 8; })), ddpm::DataError);  // drop, N < W
  EXPECT_NO_THROW(ddpm::DataLoader(dataset, with([](auto& o) {
                                     o.world_size = 8;
                                     o.rank = 7;
                                     o.shard_tail = ddpm::ShardTail::kWrap;
                                   })));
  EXPECT_THROW(ddpm::DataLoader(dataset, options(4), ddpm::LoaderState{0, 5}), ddpm::DataError);
}

TEST(DataLoader, WorkerExceptionIsRethrownWithContext) {
  const auto dataset = pattern_dataset(40);
  ddpm::LoaderOptions o = options(4, 2);
  o.collate_fn = [](const ddpm::ImageDataset& data, const ddpm::BatchPlan& plan) {
    if (plan.sequence == 3) throw std::runtime_error("disk on fire");
    return ddpm::collate(data, plan);
  };
  ddpm::DataLoader loader(dataset, o);
  std::string message;
  int delivered = 0;
  for (int i = 0; i < 10 && message.empty(); ++i) {
    try {
      loader.next();
      ++delivered;
    } catch (const ddpm::DataError& e) {
      message = e.what();
    }
  }
  EXPECT_LE(delivered, 3);
  EXPECT_NE(message.find("batch 3 (epoch 0, shard position 12)"), std::string::npos) << message;
  EXPECT_NE(message.find("disk on fire"), std::string::npos) << message;
  EXPECT_THROW(loader.next(), ddpm::DataError);  // stays failed; the destructor still joins
}

TEST(DataLoader, DestructorJoinsPromptlyMidStream) {
  const auto dataset = pattern_dataset(64);
  std::atomic<int> collated{0};
  ddpm::LoaderOptions o = options(8, 2);
  o.prefetch_batches = 2;
  o.collate_fn = [&collated](const ddpm::ImageDataset& data, const ddpm::BatchPlan& plan) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    ++collated;
    return ddpm::collate(data, plan);
  };
  const auto start = std::chrono::steady_clock::now();
  {
    ddpm::DataLoader loader(dataset, o);
    loader.next();
    std::this_thread::sleep_for(std::chrono::milliseconds(100));  // workers now blocked on a full queue
  }
  { ddpm::DataLoader never_consumed(dataset, o); }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_LT(seconds, 2.0);
  EXPECT_LE(collated.load(), 1 + 2 + 2 + 2);  // the prefetch bound held: no runaway production
}

}  // namespace

namespace {

TEST(DataLoader, CudaDeviceWithoutCudaIsAClearError) {
  if (torch::cuda::is_available()) GTEST_SKIP() << "a GPU is present";
  ddpm::LoaderOptions o = options(4);
  o.device = torch::Device(torch::kCUDA);
  try {
    ddpm::DataLoader loader(pattern_dataset(8), o);
    FAIL() << "expected DataError";
  } catch (const ddpm::DataError& e) {
    EXPECT_NE(std::string(e.what()).find("cuda"), std::string::npos) << e.what();
  }
}

}  // namespace
