// Runs under `mpirun -np N` (N = 1, 2, 3): the MPI communicator's collectives and the gradient synchronizer,
// with values every rank can predict, so a wrong sum, root, rank mapping or average fails.
#include <ATen/record_function.h>
#include <gtest/gtest.h>
#include <mpi.h>

#include <atomic>
#include <memory>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "distributed/bucketing.h"
#include "distributed/communicator.h"
#include "distributed/mpi_context.h"
#include "tests/mpi_main.h"

namespace {

TEST(MpiCommunicator, RankAndLocalRankAreConsistent) {
  EXPECT_GE(ddpm_test::mpi().rank(), 0);
  EXPECT_LT(ddpm_test::mpi().rank(), ddpm_test::mpi().world_size());
  // All ranks of these tests run on one node: local rank equals rank.
  EXPECT_EQ(ddpm_test::mpi().local_rank(), ddpm_test::mpi().rank());
  EXPECT_EQ(ddpm_test::mpi().local_size(), ddpm_test::mpi().world_size());
}

TEST(MpiCommunicator, AllReduceSumsEveryDtype) {
  const auto comm = ddpm::make_communicator(ddpm_test::mpi(), ddpm::CommBackend::kAuto, torch::kCPU);
  ASSERT_EQ(comm->backend(), ddpm::CommBackend::kMpi);
  const int n = comm->world_size();
  const int r = comm->rank();
  for (const auto dtype : {torch::kFloat32, torch::kFloat64, torch::kInt64}) {
    torch::Tensor t = (torch::arange(1000, torch::kFloat64) + 1000 * r).to(dtype);
    comm->all_reduce_sum(t);
    // Σ_r (i + 1000 r) = n i + 1000 n(n-1)/2
    const torch::Tensor expected = (torch::arange(1000, torch::kFloat64) * n + 1000.0 * n * (n - 1) / 2).to(dtype);
    EXPECT_TRUE(torch::equal(t, expected)) << dtype;
  }
}

TEST(MpiCommunicator, BroadcastTakesTheRootsValues) {
  const auto comm = ddpm::make_communicator(ddpm_test::mpi(), ddpm::CommBackend::kMpi, torch::kCPU);
  const int root = comm->world_size() - 1;
  torch::Tensor t = torch::full({17}, static_cast<double>(comm->rank() * 10 + 3));
  comm->broadcast(t, root);
  EXPECT_TRUE(torch::equal(t, torch::full({17}, static_cast<double>(root * 10 + 3))));
}

TEST(MpiCommunicator, RejectsWhatItCannotReduce) {
  const auto comm = ddpm::make_communicator(ddpm_test::mpi(), ddpm::CommBackend::kMpi, torch::kCPU);
  torch::Tensor strided = torch::ones({4, 4}).t();
  EXPECT_THROW(comm->all_reduce_sum(strided), std::invalid_argument);
  torch::Tensor half = torch::ones({4}, torch::kFloat16);
  EXPECT_THROW(comm->all_reduce_sum(half), std::invalid_argument);
  if (!ddpm::nccl_available()) {
    EXPECT_THROW(ddpm::make_communicator(ddpm_test::mpi(), ddpm::CommBackend::kNccl, torch::kCPU), std::invalid_argument);
  }
}

// Counts the top-level operators that move data (copies, arithmetic, fills; not views), on every thread, while
// it lives: what a GPU would launch kernels for. RecordFunction's callbacks are plain functions, hence the statics.
class DataOperatorCount {
 public:
  DataOperatorCount() : handle_(at::addGlobalCallback(at::RecordFunctionCallback(&enter, &leave).scopes({at::RecordScope::FUNCTION}))) {
    count_ = 0;
  }
  ~DataOperatorCount() { at::removeCallback(handle_); }
  DataOperatorCount(const DataOperatorCount&) = delete;
  DataOperatorCount& operator=(const DataOperatorCount&) = delete;
  int64_t value() const { return count_.load(); }

 private:
  // Autograd's records of its nodes wrap what backward runs, the synchronizer's hooks included: not operators.
  static bool is_operator(const at::RecordFunction& fn) {
    return fn.scope() == at::RecordScope::FUNCTION && std::string_view(fn.name()).rfind("autograd::", 0) != 0;
  }
  static std::unique_ptr<at::ObserverContext> enter(const at::RecordFunction& fn) {
    static const std::set<std::string> moves_data = {"aten::copy_", "aten::mul", "aten::mul_", "aten::cat",
                                                     "aten::zero_", "aten::fill_", "aten::zeros", "aten::clone",
                                                     "aten::add", "aten::add_", "aten::div", "aten::div_"};
    if (!is_operator(fn)) return nullptr;
    if (depth_++ == 0 && moves_data.count(fn.name()) > 0) ++count_;
    return nullptr;
  }
  static void leave(const at::RecordFunction& fn, at::ObserverContext*) {
    if (is_operator(fn)) --depth_;
  }

  static inline std::atomic<int64_t> count_{0};
  static inline thread_local int depth_ = 0;
  at::CallbackHandle handle_;
};

// Parameters in the layouts a model has (channels-last convolution weights, a transposed matrix, plain vectors)
// and one outside the loss whose gradient is set by hand, in another layout than its own; rank r's gradients are
// 2 (r + 1) p, so their average is (N + 1) p.
TEST(GradientSynchronizer, AveragesIntoViewsOfItsBucketsWithAFewOperatorsPerBucket) {
  const auto comm = ddpm::make_communicator(ddpm_test::mpi(), ddpm::CommBackend::kMpi, torch::kCPU);
  const int n = comm->world_size();
  const int r = comm->rank();
  const auto values = [](int64_t count) { return torch::arange(1, count + 1, torch::kFloat32) / 8.0; };
  std::vector<torch::Tensor> params = {
      values(8 * 4 * 3 * 3).reshape({8, 4, 3, 3}).contiguous(torch::MemoryFormat::ChannelsLast),
      values(8 * 4 * 2 * 2).reshape({8, 4, 2, 2}).contiguous(torch::MemoryFormat::ChannelsLast),
      values(8),
      values(15).reshape({5, 3}),
      values(6).reshape({2, 3}).t(),  // dense, not contiguous
      values(16).reshape({4, 4}),
      values(12).reshape({3, 4}),
      values(6).reshape({2, 3}).t(),  // takes no part in the loss
  };
  for (torch::Tensor& p : params) p = p.detach().requires_grad_(true);
  const size_t unused = params.size() - 1;
  // The first bucket holds 1 float, the others 200: 3 buckets for the 8 parameters in reverse order, as at first.
  ddpm::GradientSynchronizer sync(params, *comm, /*bucket_bytes=*/800, /*first_bucket_bytes=*/4);
  const auto backward = [&] {
    torch::Tensor loss = torch::zeros({});
    for (size_t i = 0; i < unused; ++i) loss = loss + (params[i] * params[i]).sum();
    (loss * static_cast<double>(r + 1)).backward();
  };
  const auto drop_gradients = [&] {
    for (torch::Tensor& p : params) p.mutable_grad().reset();
  };
  int64_t buckets = 0;
  const auto expect_average = [&](double times, const torch::Tensor& unused_expected, const std::string& when) {
    std::set<const void*> storages;
    for (size_t i = 0; i < params.size(); ++i) {
      const torch::Tensor& grad = params[i].grad();
      ASSERT_TRUE(grad.defined()) << when << ", parameter " << i;
      const torch::Tensor expected = i == unused ? unused_expected : params[i].detach() * times * (n + 1);
      EXPECT_TRUE(torch::allclose(grad, expected, 1e-6, 1e-6)) << when << ", parameter " << i;
      storages.insert(grad.storage().unsafeGetStorageImpl());
    }
    EXPECT_EQ(static_cast<int64_t>(storages.size()), buckets) << when << ": every gradient is a view of a bucket";
  };

  // What the unused parameter accumulated earlier takes part, laid out contiguously unlike the parameter.
  const torch::Tensor by_hand = values(6).reshape({3, 2});
  ASSERT_NE(by_hand.strides(), params[unused].strides());
  params[unused].mutable_grad() = by_hand * static_cast<double>(r + 1);
  sync.begin();
  backward();
  ddpm::SyncStats stats = sync.finish();  // and the layout is rebuilt in the ready order, once
  buckets = stats.buckets;
  EXPECT_EQ(buckets, 3);
  expect_average(1.0, by_hand * (n + 1) / 2.0, "first step");

  drop_gradients();
  int64_t local = 0;
  {
    const DataOperatorCount count;
    backward();
    local = count.value();
  }
  drop_gradients();
  int64_t synchronized = 0;
  {
    const DataOperatorCount count;
    sync.begin();
    backward();
    stats = sync.finish();
    synchronized = count.value();
  }
  buckets = stats.buckets;
  expect_average(1.0, torch::zeros({3, 2}), "after the rebuilt layout");
  // Per bucket one concatenation, and one division by N when N > 1; one fill of zeros for the unused parameter.
  // A copy in and a copy back per parameter tensor would be 16 or more.
  EXPECT_EQ(synchronized - local, buckets * (n > 1 ? 2 : 1) + 1) << "operators of a synchronized backward beyond a "
                                                                  << "local one, with " << buckets << " buckets";

  // Without the gradients dropped, backward accumulates into the views of the last average, (N + 1) p + 2 (r + 1)
  // p, averaging to 2 (N + 1) p; three gradients replaced by copies of themselves no longer alias their slots,
  // so their buckets are filled partly in place, partly by copies.
  for (const size_t i : {2, 3, 5}) params[i].mutable_grad() = params[i].grad().clone();
  sync.begin();
  backward();
  sync.finish();
  expect_average(2.0, torch::zeros({3, 2}), "accumulated onto the previous average");
}

TEST(GradientSynchronizer, RefusesParametersItCannotBucket) {
  const auto comm = ddpm::make_communicator(ddpm_test::mpi(), ddpm::CommBackend::kMpi, torch::kCPU);
  const auto refusal = [&](const std::vector<torch::Tensor>& params) -> std::string {
    try {
      ddpm::GradientSynchronizer sync(params, *comm, 1 << 20, 1 << 20);
    } catch (const std::invalid_argument& e) {
      return e.what();
    }
    return "accepted";
  };
  EXPECT_NE(refusal({torch::ones({4, 4}).slice(1, 0, 4, 2).requires_grad_(true)})
                .find("parameter 0 (sizes [4, 2], strides [4, 2]) is not dense"),
            std::string::npos);
  EXPECT_NE(refusal({torch::ones({4}).requires_grad_(true), torch::ones({4}, torch::kFloat64).requires_grad_(true)})
                .find("parameter 1 is Double on cpu, parameter 0 Float on cpu"),
            std::string::npos);
}

}  // namespace
