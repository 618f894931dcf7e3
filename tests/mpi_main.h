// The MPI process of a test binary that runs under mpirun (or as a singleton without it): mpi_main.cpp initializes
// MPI, runs the GoogleTest cases, and fails every rank when any rank failed.
#pragma once
#include "distributed/mpi_context.h"

namespace ddpm_test {

const ddpm::MpiContext& mpi();

}  // namespace ddpm_test
