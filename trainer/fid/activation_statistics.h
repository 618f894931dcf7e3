// The mean and covariance of activations [N, D] fed batch by batch, on every rank, then combined across ranks:
// float64 throughout, and accumulated around a shift (each rank's first batch mean) so that Σxxᵀ − nμμᵀ never
// cancels the digits away when the mean is large against the spread.
#pragma once
#include <torch/torch.h>

#include <cstdint>
#include <string>

#include "distributed/mpi_context.h"
#include "trainer/fid/fid_statistics.h"

namespace ddpm {

class ActivationStatistics {
 public:
  // activations: [N, D] of any floating dtype, on any device (the sums stay on that device until reduce).
  // N may be 0. Throws std::runtime_error when D changes between batches or the tensor is not 2-d.
  void add(const torch::Tensor& activations);

  // Collective: combines every rank's sums (MPI_Allreduce, MPI_DOUBLE), exactly as if one rank had seen all the
  // activations (Chan et al.'s pairwise update of means and centered sums). Ranks without activations take part.
  // Afterwards every rank holds the combined statistics and add() is refused. Call once.
  void reduce(const MpiContext& mpi);

  int64_t count() const { return count_; }
  int64_t dimension() const { return dimension_; }

  // μ = mean, Σ = the centered sum / (n − 1), numpy.cov(rowvar=False) with ddof 1; float64 on the CPU. Throws when
  // fewer than 2 activations were seen (a covariance needs 2).
  FidStatistics statistics(const std::string& source) const;

 private:
  int64_t count_ = 0;
  int64_t dimension_ = 0;  // 0: no activations yet
  bool reduced_ = false;
  torch::Tensor shift_;   // [D] float64: the first batch's mean on this rank
  torch::Tensor sum_;     // [D] float64: Σ (x − shift)
  torch::Tensor outer_;   // [D, D] float64: Σ (x − shift)(x − shift)ᵀ
};

}  // namespace ddpm
