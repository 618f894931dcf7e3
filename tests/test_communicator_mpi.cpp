// Runs under `mpirun -np N` (N = 1, 2, 3): the MPI communicator's collectives, with values every rank can
// predict, so a wrong sum, root or rank mapping fails.
#include <gtest/gtest.h>
#include <mpi.h>

#include <memory>

#include "distributed/communicator.h"
#include "distributed/mpi_context.h"

namespace {

ddpm::MpiContext* g_mpi = nullptr;

TEST(MpiCommunicator, RankAndLocalRankAreConsistent) {
  ASSERT_NE(g_mpi, nullptr);
  EXPECT_GE(g_mpi->rank(), 0);
  EXPECT_LT(g_mpi->rank(), g_mpi->world_size());
  // All ranks of these tests run on one node: local rank equals rank.
  EXPECT_EQ(g_mpi->local_rank(), g_mpi->rank());
  EXPECT_EQ(g_mpi->local_size(), g_mpi->world_size());
}

TEST(MpiCommunicator, AllReduceSumsEveryDtype) {
  const auto comm = ddpm::make_communicator(*g_mpi, ddpm::CommBackend::kAuto, torch::kCPU);
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
  const auto comm = ddpm::make_communicator(*g_mpi, ddpm::CommBackend::kMpi, torch::kCPU);
  const int root = comm->world_size() - 1;
  torch::Tensor t = torch::full({17}, static_cast<double>(comm->rank() * 10 + 3));
  comm->broadcast(t, root);
  EXPECT_TRUE(torch::equal(t, torch::full({17}, static_cast<double>(root * 10 + 3))));
}

TEST(MpiCommunicator, RejectsWhatItCannotReduce) {
  const auto comm = ddpm::make_communicator(*g_mpi, ddpm::CommBackend::kMpi, torch::kCPU);
  torch::Tensor strided = torch::ones({4, 4}).t();
  EXPECT_THROW(comm->all_reduce_sum(strided), std::invalid_argument);
  torch::Tensor half = torch::ones({4}, torch::kFloat16);
  EXPECT_THROW(comm->all_reduce_sum(half), std::invalid_argument);
  if (!ddpm::nccl_available()) {
    EXPECT_THROW(ddpm::make_communicator(*g_mpi, ddpm::CommBackend::kNccl, torch::kCPU), std::invalid_argument);
  }
}

}  // namespace

int main(int argc, char** argv) {
  ddpm::MpiContext mpi(&argc, &argv);
  g_mpi = &mpi;
  ::testing::InitGoogleTest(&argc, argv);
  // Only rank 0 prints the results; every rank's failures still fail its exit code (and so mpirun's).
  if (mpi.rank() != 0) {
    delete ::testing::UnitTest::GetInstance()->listeners().Release(
        ::testing::UnitTest::GetInstance()->listeners().default_result_printer());
  }
  int failed = RUN_ALL_TESTS();
  int any_failed = 0;
  MPI_Allreduce(&failed, &any_failed, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
  return any_failed;
}
