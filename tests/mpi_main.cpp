#include "tests/mpi_main.h"

#include <gtest/gtest.h>

namespace ddpm_test {
namespace {

const ddpm::MpiContext* g_mpi = nullptr;  // the process's, for the lifetime of main()

}  // namespace

const ddpm::MpiContext& mpi() { return *g_mpi; }

}  // namespace ddpm_test

int main(int argc, char** argv) {
  const ddpm::MpiContext mpi(&argc, &argv);
  ddpm_test::g_mpi = &mpi;
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
