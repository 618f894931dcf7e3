// Elementwise Gaussian quantities of the variational bound (all in nats; callers convert to bits).
#pragma once
#include <torch/torch.h>

namespace ddpm {

// KL(N(mean1, exp(logvar1)) || N(mean2, exp(logvar2))), elementwise, in nats. Broadcasts.
torch::Tensor normal_kl(const torch::Tensor& mean1, const torch::Tensor& logvar1, const torch::Tensor& mean2,
                        const torch::Tensor& logvar2);

// The tanh approximation of the standard normal CDF used by both reference implementations,
// Φ(x) ≈ ½(1 + tanh(√(2/π)(x + 0.044715x³))). Kept so that our bits/dim are comparable with theirs.
torch::Tensor approx_standard_normal_cdf(const torch::Tensor& x);

// log p(x | means, exp(log_scales)) of the discretized Gaussian decoder (Ho et al. 2020, eq. 13), elementwise.
// x holds data in [-1, 1] on the 256-level grid u/127.5 - 1. Each value owns the bin x ± 1/255; the bin of
// -1 is open to -∞ and the bin of +1 open to +∞, so the 256 probabilities sum to 1. Probabilities are
// floored at 1e-12 before the log, as in the reference codes.
torch::Tensor discretized_gaussian_log_likelihood(const torch::Tensor& x, const torch::Tensor& means,
                                                  const torch::Tensor& log_scales);

// Mean over every dimension but the first (the batch): one value per example.
torch::Tensor mean_flat(const torch::Tensor& tensor);

// ln 2, to turn nats per dimension into bits per dimension.
inline constexpr double kLn2 = 0.69314718055994530942;

}  // namespace ddpm
