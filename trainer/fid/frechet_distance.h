// The Fréchet distance between two Gaussians fitted to Inception activations (FID, Heusel et al. 2017):
// ‖μ1 − μ2‖² + Tr(Σ1) + Tr(Σ2) − 2 Tr((Σ1 Σ2)^{1/2}), as pytorch-fid's calculate_frechet_distance computes it.
#pragma once
#include "trainer/fid/fid_statistics.h"

namespace ddpm {

// Tr((Σ1 Σ2)^{1/2}) is the sum of the singular values of Σ1^{1/2} Σ2^{1/2}, from the eigendecompositions of Σ1 and
// Σ2 in float64 (frechet_distance.cpp says why that form). Throws std::runtime_error naming both sources for
// mismatched or malformed shapes (mu 1-d, sigma square, the same D), non-finite values, a sigma that is not
// symmetric, and for the case pytorch-fid refuses: a product Σ1 Σ2 whose square root has an imaginary part beyond
// 1e-3 (a sigma with clearly negative eigenvalues). Like pytorch-fid, when the square root is not finite it retries
// with 1e-6 added to both diagonals.
double frechet_distance(const FidStatistics& a, const FidStatistics& b);

// Tr((Σ1 Σ2)^{1/2}) alone (the inputs checked as above, without the names); exposed for the tests.
double trace_sqrt_product(const torch::Tensor& sigma1, const torch::Tensor& sigma2);

}  // namespace ddpm
