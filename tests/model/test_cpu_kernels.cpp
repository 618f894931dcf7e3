// The CPU kernels under UNetInference: the fused group norm (+ per-image bias, + SiLU) against float64 group norm
// composed from ATen's operators, on its vector and scalar paths, one image or many threads; parallel_chunks.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <ATen/Parallel.h>

#include <atomic>
#include <mutex>
#include <set>
#include <stdexcept>
#include <thread>

#include "trainer/model/cpu_parallel.h"
#include "trainer/model/group_norm_nhwc.h"

namespace {

// The definition: GroupNorm(x + bias[:, :, None, None]), then SiLU, in float64.
torch::Tensor reference(const torch::Tensor& x, const torch::Tensor& bias, const torch::Tensor& weight,
                        const torch::Tensor& shift, int64_t groups, double eps, bool silu) {
  torch::Tensor h = x.to(torch::kFloat64);
  if (bias.defined()) h = h + bias.to(torch::kFloat64).unsqueeze(2).unsqueeze(3);
  h = torch::group_norm(h, groups, weight.to(torch::kFloat64), shift.to(torch::kFloat64), eps);
  return silu ? torch::silu(h) : h;
}

struct Case {
  int64_t batch, channels, side, groups;
  bool bias, silu;
  double offset, scale;  // x = offset + scale·N(0, 1)
  double tolerance;
};

class ThreadsScope {  // ctest runs with one intra-op thread; the parallel path needs two
 public:
  explicit ThreadsScope(int threads) : before_(at::get_num_threads()) { at::set_num_threads(threads); }
  ~ThreadsScope() { at::set_num_threads(before_); }
  ThreadsScope(const ThreadsScope&) = delete;
  ThreadsScope& operator=(const ThreadsScope&) = delete;

 private:
  int before_;
};

TEST(GroupNormNhwc, EqualsTheComposedOperatorsInFloat64) {
  const ThreadsScope threads(2);
  const std::vector<Case> cases = {
      {2, 64, 8, 32, true, true, 0.0, 1.0, 2e-5},     // a residual block's second norm, vector path
      {2, 64, 8, 32, false, false, 0.0, 1.0, 2e-5},   // attention's norm: no bias, no SiLU
      {3, 12, 5, 4, true, true, 0.0, 1.0, 2e-5},      // 12 channels: the scalar path
      {8, 64, 16, 32, true, true, 0.0, 1.0, 2e-5},    // 131,072 elements: shared among threads
      {1, 32, 32, 32, false, true, 0.0, 1.0, 2e-5},   // one channel per group, 1,024 pixels (16 sum blocks)
      {2, 64, 8, 32, true, true, 100.0, 0.01, 2e-3},  // a large mean over a small spread: two passes keep it
  };
  for (const Case& c : cases) {
    torch::manual_seed(c.batch * 1000 + c.channels);
    const torch::Tensor x = (torch::randn({c.batch, c.channels, c.side, c.side}) * c.scale + c.offset)
                                .contiguous(torch::MemoryFormat::ChannelsLast);
    const torch::Tensor bias = c.bias ? torch::randn({c.batch, c.channels}) : torch::Tensor();
    const torch::Tensor weight = 1.0 + 0.3 * torch::randn({c.channels});
    const torch::Tensor shift = 0.3 * torch::randn({c.channels});
    const torch::Tensor y = ddpm::group_norm_nhwc(x, bias, weight, shift, c.groups, 1e-6, c.silu);
    EXPECT_TRUE(y.is_contiguous(torch::MemoryFormat::ChannelsLast));
    const torch::Tensor expected = reference(x, bias, weight, shift, c.groups, 1e-6, c.silu);
    const double error = (y.to(torch::kFloat64) - expected).abs().max().item<double>();
    EXPECT_LT(error, c.tolerance) << c.batch << "x" << c.channels << "x" << c.side << " groups " << c.groups
                                  << " offset " << c.offset;
    // A wrong group count (statistics over the wrong channels) is far outside the tolerance.
    const double wrong = (reference(x, bias, weight, shift, c.groups / 2, 1e-6, c.silu) - expected).abs().max().item<double>();
    EXPECT_GT(wrong, 10 * c.tolerance);
  }
}

TEST(GroupNormNhwc, TakesNchwAndBroadcastBiasAndRefusesOtherInputs) {
  const torch::Tensor x = torch::randn({2, 64, 4, 4});
  const torch::Tensor weight = torch::ones({64}), shift = torch::zeros({64});
  const torch::Tensor row = torch::randn({1, 64});
  const torch::Tensor from_nchw = ddpm::group_norm_nhwc(x, row.expand({2, 64}), weight, shift, 32, 1e-6, true);
  const torch::Tensor from_nhwc = ddpm::group_norm_nhwc(x.contiguous(torch::MemoryFormat::ChannelsLast),
                                                        row.repeat({2, 1}), weight, shift, 32, 1e-6, true);
  EXPECT_TRUE(torch::equal(from_nchw, from_nhwc));
  EXPECT_THROW(ddpm::group_norm_nhwc(x, {}, weight, shift, 24, 1e-6, false), c10::Error);  // 64 not in 24 groups
  EXPECT_THROW(ddpm::group_norm_nhwc(x.to(torch::kFloat64), {}, weight, shift, 32, 1e-6, false), c10::Error);
  EXPECT_THROW(ddpm::group_norm_nhwc(x, torch::randn({3, 64}), weight, shift, 32, 1e-6, false), c10::Error);
}

TEST(ParallelChunks, CoversTheRangeOnceOnSeveralThreadsAndPassesErrorsOn) {
  const ThreadsScope threads(2);
  std::vector<std::atomic<int>> hits(1000);
  std::mutex mutex;
  std::set<std::thread::id> workers;
  ddpm::parallel_chunks(1000, [&](int64_t begin, int64_t end) {
    {
      const std::lock_guard<std::mutex> lock(mutex);
      workers.insert(std::this_thread::get_id());
    }
    for (int64_t i = begin; i < end; ++i) hits[static_cast<size_t>(i)]++;
  });
  for (size_t i = 0; i < hits.size(); ++i) ASSERT_EQ(hits[i].load(), 1) << "index " << i;
  // LibTorch's OpenMP runtime was found and ran the chunks on two threads (the point of the function).
  EXPECT_EQ(workers.size(), 2u);
  EXPECT_THROW(ddpm::parallel_chunks(10, [](int64_t begin, int64_t) {
                 if (begin > 0) throw std::runtime_error("chunk failed");
               }),
               std::runtime_error);
  int calls = 0;
  ddpm::parallel_chunks(0, [&](int64_t, int64_t) { ++calls; });
  EXPECT_EQ(calls, 0);
}

}  // namespace
