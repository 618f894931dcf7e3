#include "trainer/fid/activation_statistics.h"

#include <stdexcept>
#include <string>
#include <vector>

namespace ddpm {
namespace {

void allreduce_sum(std::vector<double>& values, const MpiContext& mpi, const char* what) {
  check_mpi(MPI_Allreduce(MPI_IN_PLACE, values.data(), static_cast<int>(values.size()), MPI_DOUBLE, MPI_SUM, mpi.comm()),
            what);
}

// A contiguous float64 CPU tensor's elements (the MPI buffer).
std::vector<double> to_vector(const torch::Tensor& t) {
  const torch::Tensor c = t.to(torch::kCPU, torch::kFloat64).contiguous();
  return std::vector<double>(c.data_ptr<double>(), c.data_ptr<double>() + c.numel());
}

torch::Tensor from_vector(const std::vector<double>& values, c10::IntArrayRef shape) {
  return torch::from_blob(const_cast<double*>(values.data()), shape, torch::kFloat64).clone();
}

}  // namespace

void ActivationStatistics::add(const torch::Tensor& activations) {
  if (reduced_) throw std::logic_error("ActivationStatistics::add after reduce");
  if (activations.dim() != 2) {
    throw std::runtime_error("activations must be [N, D], got " + std::to_string(activations.dim()) + " dimensions");
  }
  const int64_t n = activations.size(0);
  const int64_t d = activations.size(1);
  if (dimension_ != 0 && d != dimension_) {
    throw std::runtime_error("activations changed from D = " + std::to_string(dimension_) + " to D = " + std::to_string(d));
  }
  if (n == 0) return;
  const torch::Tensor x = activations.to(torch::kFloat64);
  if (dimension_ == 0) {
    dimension_ = d;
    shift_ = x.mean(0);
    sum_ = torch::zeros({d}, x.options());
    outer_ = torch::zeros({d, d}, x.options());
  }
  const torch::Tensor centered = x - shift_.to(x.device());
  sum_ += centered.sum(0);
  outer_.addmm_(centered.t(), centered);
  count_ += n;
}

void ActivationStatistics::reduce(const MpiContext& mpi) {
  if (reduced_) throw std::logic_error("ActivationStatistics::reduce called twice");
  reduced_ = true;
  // D first: a rank without activations learns it, and ranks that disagree fail together.
  int64_t dimension = dimension_;
  check_mpi(MPI_Allreduce(MPI_IN_PLACE, &dimension, 1, MPI_INT64_T, MPI_MAX, mpi.comm()), "MPI_Allreduce of D");
  mpi.throw_if_any_failed(dimension_ != 0 && dimension_ != dimension
                              ? "activations of D = " + std::to_string(dimension_) + " on " + mpi.where() +
                                    ", D = " + std::to_string(dimension) + " elsewhere"
                              : std::string(),
                          "the ranks' activations differ in D");
  if (dimension == 0) return;  // no rank saw an activation: statistics() says so
  const int64_t d = dimension;

  // This rank's count, mean and centered sum M2 = Σ (x − mean)(x − mean)ᵀ, from the shifted sums (S1 = Σ (x − s) is
  // small next to n·s, so S2 − S1 S1ᵀ / n keeps its digits).
  torch::Tensor local_mean = torch::zeros({d}, torch::kFloat64);
  torch::Tensor local_m2 = torch::zeros({d, d}, torch::kFloat64);
  if (count_ > 0) {
    const torch::Tensor sum = sum_.to(torch::kCPU);
    const double n = static_cast<double>(count_);
    local_mean = shift_.to(torch::kCPU) + sum / n;
    local_m2 = outer_.to(torch::kCPU) - torch::outer(sum, sum) / n;
  }
  // Pass 1: n and n·mean over ranks give the combined mean.
  std::vector<double> first = to_vector(local_mean * static_cast<double>(count_));
  first.push_back(static_cast<double>(count_));  // exact below 2^53 images
  allreduce_sum(first, mpi, "MPI_Allreduce of the activation means");
  const double total = first.back();
  first.pop_back();
  const torch::Tensor mean = from_vector(first, {d}) / total;
  // Pass 2: M2 = Σ_r [M2_r + n_r (mean_r − mean)(mean_r − mean)ᵀ], each term centered already.
  const torch::Tensor delta = local_mean - mean;
  std::vector<double> second =
      to_vector(count_ > 0 ? local_m2 + static_cast<double>(count_) * torch::outer(delta, delta) : local_m2);
  allreduce_sum(second, mpi, "MPI_Allreduce of the activation covariances");

  count_ = static_cast<int64_t>(total);
  dimension_ = d;
  shift_ = mean;
  sum_ = torch::zeros({d}, torch::kFloat64);
  outer_ = from_vector(second, {d, d});
}

FidStatistics ActivationStatistics::statistics(const std::string& source) const {
  if (count_ < 2) {
    throw std::runtime_error(source + ": " + std::to_string(count_) +
                             " image(s): the covariance of the activations needs at least 2");
  }
  const double n = static_cast<double>(count_);
  const torch::Tensor sum = sum_.to(torch::kCPU);
  FidStatistics stats;
  stats.mu = shift_.to(torch::kCPU) + sum / n;
  torch::Tensor sigma = (outer_.to(torch::kCPU) - torch::outer(sum, sum) / n) / (n - 1.0);
  stats.sigma = ((sigma + sigma.t()) * 0.5).contiguous();  // addmm's blocks need not round symmetrically
  stats.count = count_;
  stats.source = source;
  return stats;
}

}  // namespace ddpm
