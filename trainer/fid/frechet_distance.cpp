#include "trainer/fid/frechet_distance.h"

#include <cmath>
#include <limits>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "trainer/fid/describe.h"

namespace ddpm {
namespace {

// pytorch-fid's constants: the offset added to both covariances when the square root is not finite, and the
// tolerance on the imaginary part of its diagonal (np.allclose(..., 0, atol=1e-3)).
constexpr double kEps = 1e-6;
constexpr double kImaginaryTolerance = 1e-3;
// A covariance computed in float64 is symmetric to rounding; an asymmetry beyond this (relative to the largest
// entry) is not a covariance matrix.
constexpr double kSymmetryTolerance = 1e-9;

std::string shape_text(const torch::Tensor& t) { return t.defined() ? ddpm::shape_text(t.sizes()) : "(none)"; }

std::string number(double value) {
  std::ostringstream out;
  out.precision(6);
  out << value;
  return out.str();
}

// Σ checked (square, finite, symmetric up to rounding) and made exactly symmetric, float64.
torch::Tensor checked_covariance(const torch::Tensor& sigma, const std::string& name) {
  if (!sigma.defined() || sigma.dim() != 2 || sigma.size(0) != sigma.size(1)) {
    throw std::runtime_error(name + ": sigma must be a square matrix [D, D], got " + shape_text(sigma));
  }
  const torch::Tensor s = sigma.to(torch::kCPU, torch::kFloat64);
  if (!torch::isfinite(s).all().item<bool>()) throw std::runtime_error(name + ": sigma holds non-finite values");
  const double scale = s.abs().max().item<double>();
  const double asymmetry = (s - s.t()).abs().max().item<double>();
  if (asymmetry > kSymmetryTolerance * scale) {
    throw std::runtime_error(name + ": sigma is not symmetric (largest |sigma - sigma^T| " + number(asymmetry) +
                             ", largest |sigma| " + number(scale) + ")");
  }
  return (s + s.t()) * 0.5;
}

// Tr((Σ1 Σ2)^{1/2}), computed in float64 from the two symmetric eigendecompositions Σk = Vk diag(wk) Vkᵀ
// (torch::linalg_eigh): with C = diag(√w1) V1ᵀ V2 diag(√w2), Σ1 Σ2 is similar to C Cᵀ (= √Σ1 Σ2 √Σ1 in V1's basis),
// so Tr((Σ1 Σ2)^{1/2}) = Σ σ_i(C), the sum of C's singular values. C itself goes to the SVD, not C Cᵀ: a singular
// product (fewer images than dimensions) has rounding-level eigenvalues δ whose square roots √δ ≫ δ would be added
// up, while C's zero singular values stay at rounding level (ε·‖C‖). Eigenvalues of Σk below matrix_rank's tolerance
// (D·ε·max|w|) are rounding, and taken as 0.
//
// pytorch-fid (scipy's sqrtm, a Schur form of the non-symmetric product) gives a complex root when the product has
// negative eigenvalues, which only a Σ with clearly negative eigenvalues (not a covariance) can cause; that case
// takes the product's eigenvalues λ = eig(S1 C S2 Cᵀ), S = the signs of w, and keeps pytorch-fid's rule: the real
// parts of √λ when no imaginary part exceeds 1e-3, an error otherwise.
struct Decomposition {
  torch::Tensor w;  // eigenvalues, those below the rank tolerance set to 0
  torch::Tensor v;  // eigenvectors (columns)
  bool negative = false;  // an eigenvalue clearly below 0
};

Decomposition decompose(const torch::Tensor& sigma) {
  auto [w, v] = torch::linalg_eigh(sigma);
  const double largest = w.abs().max().item<double>();
  const double tolerance = static_cast<double>(sigma.size(0)) * std::numeric_limits<double>::epsilon() * largest;
  w = torch::where(w.abs() <= tolerance, torch::zeros_like(w), w);
  const bool negative = w.min().item<double>() < 0.0;
  return {w, v, negative};
}

struct SqrtTrace {
  double trace = 0.0;              // Σ Re √λ
  double largest_imaginary = 0.0;  // max |Im √λ|: what pytorch-fid checks against 1e-3
  bool finite = true;
};

SqrtTrace sqrt_trace(const Decomposition& a, const Decomposition& b, double offset) {
  SqrtTrace result;
  const torch::Tensor w1 = a.w + offset, w2 = b.w + offset;  // Σ + offset·I = V diag(w + offset) Vᵀ
  const torch::Tensor c = torch::matmul(a.v.t(), b.v) * torch::outer(w1.abs().sqrt(), w2.abs().sqrt());
  if (!torch::isfinite(c).all().item<bool>()) {  // LAPACK would fail on it rather than return NaNs
    result.finite = false;
    return result;
  }
  if (!a.negative && !b.negative) {
    result.trace = torch::linalg_svdvals(c).sum().item<double>();
  } else {
    const torch::Tensor product = torch::matmul(torch::matmul(torch::diag(w1.sign()), c),
                                                torch::matmul(torch::diag(w2.sign()), c.t()));
    const torch::Tensor root = torch::sqrt(torch::linalg_eigvals(product));
    result.trace = torch::real(root).sum().item<double>();
    result.largest_imaginary = torch::imag(root).abs().max().item<double>();
  }
  result.finite = std::isfinite(result.trace) && std::isfinite(result.largest_imaginary);
  return result;
}

double checked_trace_sqrt_product(const torch::Tensor& sigma1, const torch::Tensor& sigma2, const std::string& name1,
                                  const std::string& name2) {
  const Decomposition a = decompose(sigma1), b = decompose(sigma2);
  if (!torch::isfinite(a.w).all().item<bool>() || !torch::isfinite(b.w).all().item<bool>()) {
    throw std::runtime_error("the eigendecomposition of the covariances of " + name1 + " and " + name2 +
                             " is not finite");
  }
  SqrtTrace root = sqrt_trace(a, b, 0.0);
  if (!root.finite) {
    // pytorch-fid: "fid calculation produces singular product; adding 1e-6 to diagonal of cov estimates".
    root = sqrt_trace(a, b, kEps);
    if (!root.finite) {
      throw std::runtime_error("the square root of the covariance product of " + name1 + " and " + name2 +
                               " is not finite, even with " + number(kEps) + " added to their diagonals");
    }
  }
  if (root.largest_imaginary > kImaginaryTolerance) {
    throw std::runtime_error("the square root of the covariance product of " + name1 + " and " + name2 +
                             " has an imaginary component of " + number(root.largest_imaginary) + " (more than " +
                             number(kImaginaryTolerance) + ", where pytorch-fid stops too): " +
                             (a.negative ? name1 : name2) + "'s sigma has negative eigenvalues, it is no covariance");
  }
  return root.trace;
}

}  // namespace

double trace_sqrt_product(const torch::Tensor& sigma1, const torch::Tensor& sigma2) {
  const torch::Tensor s1 = checked_covariance(sigma1, "sigma1");
  const torch::Tensor s2 = checked_covariance(sigma2, "sigma2");
  if (s1.size(0) != s2.size(0)) {
    throw std::runtime_error("sigma1 " + shape_text(s1) + " and sigma2 " + shape_text(s2) + " differ in size");
  }
  return checked_trace_sqrt_product(s1, s2, "sigma1", "sigma2");
}

double frechet_distance(const FidStatistics& a, const FidStatistics& b) {
  for (const FidStatistics* s : {&a, &b}) {
    if (!s->mu.defined() || s->mu.dim() != 1) {
      throw std::runtime_error(s->source + ": mu must be a vector [D], got " + shape_text(s->mu));
    }
  }
  const torch::Tensor sigma1 = checked_covariance(a.sigma, a.source);
  const torch::Tensor sigma2 = checked_covariance(b.sigma, b.source);
  for (const FidStatistics* s : {&a, &b}) {
    if (s->sigma.size(0) != s->mu.size(0)) {
      throw std::runtime_error(s->source + ": mu " + shape_text(s->mu) + " and sigma " + shape_text(s->sigma) +
                               " differ in D");
    }
  }
  if (a.mu.size(0) != b.mu.size(0)) {
    throw std::runtime_error("the statistics differ in dimension: " + a.source + " has D = " +
                             std::to_string(a.mu.size(0)) + ", " + b.source + " has D = " +
                             std::to_string(b.mu.size(0)) + " (activations of different networks or layers)");
  }
  const torch::Tensor mu1 = a.mu.to(torch::kCPU, torch::kFloat64);
  const torch::Tensor mu2 = b.mu.to(torch::kCPU, torch::kFloat64);
  for (const auto& [mu, name] : {std::pair{mu1, a.source}, std::pair{mu2, b.source}}) {
    if (!torch::isfinite(mu).all().item<bool>()) throw std::runtime_error(name + ": mu holds non-finite values");
  }
  const torch::Tensor diff = mu1 - mu2;
  const double mean_term = diff.dot(diff).item<double>();
  const double trace_term = sigma1.trace().item<double>() + sigma2.trace().item<double>();
  return mean_term + trace_term - 2.0 * checked_trace_sqrt_product(sigma1, sigma2, a.source, b.source);
}

}  // namespace ddpm
