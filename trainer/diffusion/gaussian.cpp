#include "trainer/diffusion/gaussian.h"

#include <cmath>

namespace ddpm {

torch::Tensor normal_kl(const torch::Tensor& mean1, const torch::Tensor& logvar1, const torch::Tensor& mean2,
                        const torch::Tensor& logvar2) {
  // ½(-1 + log σ2² - log σ1² + σ1²/σ2² + (μ1 - μ2)²/σ2²)
  return 0.5 * (-1.0 + logvar2 - logvar1 + torch::exp(logvar1 - logvar2) +
                (mean1 - mean2).pow(2) * torch::exp(-logvar2));
}

torch::Tensor approx_standard_normal_cdf(const torch::Tensor& x) {
  const double sqrt_2_over_pi = std::sqrt(2.0 / std::acos(-1.0));
  return 0.5 * (1.0 + torch::tanh(sqrt_2_over_pi * (x + 0.044715 * x.pow(3))));
}

torch::Tensor discretized_gaussian_log_likelihood(const torch::Tensor& x, const torch::Tensor& means,
                                                  const torch::Tensor& log_scales) {
  TORCH_CHECK(x.sizes() == means.sizes() && x.sizes() == log_scales.sizes(),
              "discretized_gaussian_log_likelihood: x, means and log_scales must have one shape, got ", x.sizes(),
              ", ", means.sizes(), ", ", log_scales.sizes());
  constexpr double kHalfBin = 1.0 / 255.0;  // the grid spacing is 2/255
  constexpr double kFloor = 1e-12;
  const torch::Tensor centered_x = x - means;
  const torch::Tensor inv_stdv = torch::exp(-log_scales);
  const torch::Tensor cdf_plus = approx_standard_normal_cdf(inv_stdv * (centered_x + kHalfBin));
  const torch::Tensor cdf_min = approx_standard_normal_cdf(inv_stdv * (centered_x - kHalfBin));
  const torch::Tensor log_cdf_plus = torch::log(cdf_plus.clamp_min(kFloor));             // bin (-∞, -1 + 1/255]
  const torch::Tensor log_one_minus_cdf_min = torch::log((1.0 - cdf_min).clamp_min(kFloor));  // [1 - 1/255, ∞)
  const torch::Tensor log_cdf_delta = torch::log((cdf_plus - cdf_min).clamp_min(kFloor));
  return torch::where(x < -0.999, log_cdf_plus, torch::where(x > 0.999, log_one_minus_cdf_min, log_cdf_delta));
}

torch::Tensor mean_flat(const torch::Tensor& tensor) {
  TORCH_CHECK(tensor.dim() >= 1, "mean_flat needs a batch dimension");
  if (tensor.dim() == 1) return tensor;
  return tensor.flatten(1).mean(1);
}

}  // namespace ddpm
