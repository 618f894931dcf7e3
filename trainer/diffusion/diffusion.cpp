#include "trainer/diffusion/diffusion.h"

#include <cmath>
#include <limits>
#include <stdexcept>

#include "trainer/diffusion/gaussian.h"

namespace ddpm {

std::string to_string(ModelVariance variance) {
  for (const auto& [value, text] : kModelVarianceNames) {
    if (value == variance) return text;
  }
  return "unknown";
}

namespace {

torch::Tensor to_table(const std::vector<double>& values) {
  return torch::tensor(values, torch::TensorOptions().dtype(torch::kFloat64));
}

}  // namespace

GaussianDiffusion::GaussianDiffusion(const std::vector<double>& betas, ModelVariance model_variance,
                                     const std::vector<int64_t>& timestep_map, int64_t original_num_timesteps)
    : num_timesteps_(static_cast<int64_t>(betas.size())),
      original_num_timesteps_(original_num_timesteps > 0 ? original_num_timesteps : static_cast<int64_t>(betas.size())),
      model_variance_(model_variance) {
  if (num_timesteps_ < 2) throw std::invalid_argument("GaussianDiffusion needs at least 2 steps");
  if (!timestep_map.empty() && timestep_map.size() != betas.size()) {
    throw std::invalid_argument("GaussianDiffusion: a timestep map of " + std::to_string(timestep_map.size()) +
                                " entries for " + std::to_string(betas.size()) + " steps");
  }
  std::vector<int64_t> map = timestep_map;
  if (map.empty()) {
    for (int64_t t = 0; t < num_timesteps_; ++t) map.push_back(t);
  }
  timestep_map_ = torch::tensor(map, torch::TensorOptions().dtype(torch::kLong));
  for (size_t i = 0; i < betas.size(); ++i) {
    if (!(betas[i] > 0.0 && betas[i] < 1.0)) {
      throw std::invalid_argument("beta at index " + std::to_string(i) + " is " + std::to_string(betas[i]) +
                                  ", outside (0, 1): a step with β = 1 destroys x_0 entirely");
    }
  }
  // Plain float64 loops: the tables are the ground truth every other quantity is cast from.
  const size_t steps = betas.size();
  std::vector<double> alphas_cumprod(steps), alphas_cumprod_prev(steps), sqrt_ac(steps), sqrt_1m_ac(steps), log_1m_ac(steps),
      sqrt_recip_ac(steps), sqrt_recipm1_ac(steps), post_var(steps), post_coef1(steps), post_coef2(steps);
  double running = 1.0;
  for (size_t i = 0; i < steps; ++i) {
    alphas_cumprod_prev[i] = running;  // ᾱ_{t-1}, with ᾱ_0 = 1
    running *= 1.0 - betas[i];         // ᾱ_t = Π_{s≤t} α_s, α_s = 1 - β_s (§2)
    alphas_cumprod[i] = running;
  }
  for (size_t i = 0; i < steps; ++i) {
    const double beta = betas[i];
    const double alpha = 1.0 - beta;
    const double ac = alphas_cumprod[i];
    const double ac_prev = alphas_cumprod_prev[i];
    sqrt_ac[i] = std::sqrt(ac);
    sqrt_1m_ac[i] = std::sqrt(1.0 - ac);
    log_1m_ac[i] = std::log1p(-ac);
    sqrt_recip_ac[i] = std::sqrt(1.0 / ac);
    sqrt_recipm1_ac[i] = std::sqrt(1.0 / ac - 1.0);
    post_var[i] = beta * (1.0 - ac_prev) / (1.0 - ac);                // β̃_t, eq. 7
    post_coef1[i] = beta * std::sqrt(ac_prev) / (1.0 - ac);           // coefficient of x_0 in μ̃_t, eq. 7
    post_coef2[i] = (1.0 - ac_prev) * std::sqrt(alpha) / (1.0 - ac);  // coefficient of x_t in μ̃_t, eq. 7
  }
  // β̃_1 = 0: its log is replaced by log β̃_2, as in the reference codes.
  std::vector<double> post_log_var_clipped(steps);
  for (size_t i = 0; i < steps; ++i) post_log_var_clipped[i] = std::log(i == 0 ? post_var[1] : post_var[i]);
  // fixed_large uses β_t except at step 1, where β̃_2 gives a better decoder likelihood (reference codes). A learned
  // variance has no table: NaN, so that reading one by mistake cannot go unnoticed.
  std::vector<double> model_var(steps), model_log_var(steps), log_betas(steps);
  for (size_t i = 0; i < steps; ++i) {
    log_betas[i] = std::log(betas[i]);
    if (model_variance == ModelVariance::kFixedLarge) {
      model_var[i] = i == 0 ? post_var[1] : betas[i];
      model_log_var[i] = std::log(model_var[i]);
    } else if (model_variance == ModelVariance::kFixedSmall) {
      model_var[i] = post_var[i];
      model_log_var[i] = post_log_var_clipped[i];
    } else {
      model_var[i] = model_log_var[i] = std::numeric_limits<double>::quiet_NaN();
    }
  }

  betas_ = to_table(betas);
  alphas_cumprod_ = to_table(alphas_cumprod);
  alphas_cumprod_prev_ = to_table(alphas_cumprod_prev);
  sqrt_alphas_cumprod_ = to_table(sqrt_ac);
  sqrt_one_minus_alphas_cumprod_ = to_table(sqrt_1m_ac);
  log_one_minus_alphas_cumprod_ = to_table(log_1m_ac);
  sqrt_recip_alphas_cumprod_ = to_table(sqrt_recip_ac);
  sqrt_recipm1_alphas_cumprod_ = to_table(sqrt_recipm1_ac);
  posterior_variance_ = to_table(post_var);
  posterior_log_variance_clipped_ = to_table(post_log_var_clipped);
  posterior_mean_coef1_ = to_table(post_coef1);
  posterior_mean_coef2_ = to_table(post_coef2);
  log_betas_ = to_table(log_betas);
  model_variance_table_ = to_table(model_var);
  model_log_variance_table_ = to_table(model_log_var);
}

GaussianDiffusion GaussianDiffusion::to(const torch::Device& device) const {
  GaussianDiffusion moved = *this;
  for (torch::Tensor* table :
       {&moved.timestep_map_, &moved.betas_, &moved.alphas_cumprod_, &moved.alphas_cumprod_prev_, &moved.sqrt_alphas_cumprod_,
        &moved.sqrt_one_minus_alphas_cumprod_, &moved.log_one_minus_alphas_cumprod_, &moved.sqrt_recip_alphas_cumprod_, &moved.sqrt_recipm1_alphas_cumprod_,
        &moved.posterior_variance_, &moved.posterior_log_variance_clipped_, &moved.posterior_mean_coef1_,
        &moved.posterior_mean_coef2_, &moved.log_betas_, &moved.model_variance_table_, &moved.model_log_variance_table_}) {
    *table = table->to(device);
  }
  return moved;
}

torch::Tensor GaussianDiffusion::extract(const torch::Tensor& table, const torch::Tensor& t, const torch::Tensor& like) {
  TORCH_CHECK(t.dim() == 1 && t.size(0) == like.size(0), "timesteps must be a vector of one index per example, got ",
              t.sizes(), " for a batch of shape ", like.sizes());
  std::vector<int64_t> shape(static_cast<size_t>(like.dim()), 1);
  shape[0] = like.size(0);
  return table.index_select(0, t.to(table.device(), torch::kLong)).to(like.device(), like.scalar_type()).view(shape);
}

DiagonalGaussian GaussianDiffusion::q_mean_variance(const torch::Tensor& x0, const torch::Tensor& t) const {
  const torch::Tensor mean = extract(sqrt_alphas_cumprod_, t, x0) * x0;
  const torch::Tensor variance = (1.0 - extract(alphas_cumprod_, t, x0)).expand_as(x0);
  const torch::Tensor log_variance = extract(log_one_minus_alphas_cumprod_, t, x0).expand_as(x0);
  return {mean, variance, log_variance};
}

torch::Tensor GaussianDiffusion::q_sample(const torch::Tensor& x0, const torch::Tensor& t,
                                          const torch::Tensor& noise) const {
  TORCH_CHECK(noise.sizes() == x0.sizes(), "q_sample: noise shape ", noise.sizes(), " differs from x0 ", x0.sizes());
  return extract(sqrt_alphas_cumprod_, t, x0) * x0 + extract(sqrt_one_minus_alphas_cumprod_, t, x0) * noise;
}

DiagonalGaussian GaussianDiffusion::q_posterior(const torch::Tensor& x0, const torch::Tensor& x_t,
                                                const torch::Tensor& t) const {
  TORCH_CHECK(x0.sizes() == x_t.sizes(), "q_posterior: x0 ", x0.sizes(), " and x_t ", x_t.sizes(), " differ");
  const torch::Tensor mean = extract(posterior_mean_coef1_, t, x_t) * x0 + extract(posterior_mean_coef2_, t, x_t) * x_t;
  const torch::Tensor variance = extract(posterior_variance_, t, x_t).expand_as(x_t);
  const torch::Tensor log_variance = extract(posterior_log_variance_clipped_, t, x_t).expand_as(x_t);
  return {mean, variance, log_variance};
}

torch::Tensor GaussianDiffusion::predict_x0_from_eps(const torch::Tensor& x_t, const torch::Tensor& t,
                                                     const torch::Tensor& eps) const {
  return extract(sqrt_recip_alphas_cumprod_, t, x_t) * x_t - extract(sqrt_recipm1_alphas_cumprod_, t, x_t) * eps;
}

ModelOutput GaussianDiffusion::split_model_output(const torch::Tensor& output, const torch::Tensor& x_t) const {
  const int64_t channels = x_t.dim() > 1 ? x_t.size(1) : 0;
  std::vector<int64_t> expected = x_t.sizes().vec();
  if (expected.size() > 1) expected[1] = model_output_channels(model_variance_, channels);
  TORCH_CHECK(output.sizes().vec() == expected, "the model's output has shape ", output.sizes(), ", expected ",
              c10::IntArrayRef(expected), learns_variance() ? " (ε and v: diffusion.model_variance is learned)" : " (ε)");
  if (!learns_variance()) return {output, {}};
  return {output.narrow(1, 0, channels), output.narrow(1, channels, channels)};
}

torch::Tensor GaussianDiffusion::model_log_variance(const torch::Tensor& v, const torch::Tensor& t,
                                                    const torch::Tensor& like) const {
  switch (model_variance_) {
    case ModelVariance::kLearned:
      return v;
    case ModelVariance::kLearnedRange: {
      const torch::Tensor min_log = extract(posterior_log_variance_clipped_, t, like);
      const torch::Tensor max_log = extract(log_betas_, t, like);
      const torch::Tensor frac = (v + 1.0) / 2.0;
      return frac * max_log + (1.0 - frac) * min_log;  // Nichol & Dhariwal eq. 15
    }
    default:
      return extract(model_log_variance_table_, t, like).expand_as(like);
  }
}

ReverseStep GaussianDiffusion::p_mean_variance(const torch::Tensor& output, const torch::Tensor& x_t,
                                               const torch::Tensor& t, bool clip_denoised) const {
  const ModelOutput out = split_model_output(output, x_t);
  torch::Tensor pred_x0 = predict_x0_from_eps(x_t, t, out.eps);
  if (clip_denoised) pred_x0 = pred_x0.clamp(-1.0, 1.0);
  const torch::Tensor mean = q_posterior(pred_x0, x_t, t).mean;
  const torch::Tensor log_variance = model_log_variance(out.v, t, x_t);
  const torch::Tensor variance =
      learns_variance() ? torch::exp(log_variance) : extract(model_variance_table_, t, x_t).expand_as(x_t);
  return {mean, variance, log_variance, pred_x0, out.eps};
}

torch::Tensor GaussianDiffusion::p_sample(const torch::Tensor& output, const torch::Tensor& x_t, const torch::Tensor& t,
                                          const torch::Tensor& noise, bool clip_denoised) const {
  const ReverseStep step = p_mean_variance(output, x_t, t, clip_denoised);
  std::vector<int64_t> shape(static_cast<size_t>(x_t.dim()), 1);
  shape[0] = x_t.size(0);
  const torch::Tensor nonzero_mask = (t != 0).to(x_t.scalar_type()).view(shape);
  return step.mean + nonzero_mask * torch::exp(0.5 * step.log_variance) * noise;
}

torch::Tensor GaussianDiffusion::model_timesteps(const torch::Tensor& t) const {
  if (!respaced()) return t;
  return timestep_map_.index_select(0, t.to(timestep_map_.device(), torch::kLong)).to(t.device());
}

torch::Tensor GaussianDiffusion::predict_eps_from_x0(const torch::Tensor& x_t, const torch::Tensor& t,
                                                     const torch::Tensor& x0) const {
  return (extract(sqrt_recip_alphas_cumprod_, t, x_t) * x_t - x0) / extract(sqrt_recipm1_alphas_cumprod_, t, x_t);
}

GaussianDiffusion::DdimTables GaussianDiffusion::ddim_tables(double eta) const {
  if (!(eta >= 0.0 && std::isfinite(eta))) throw std::invalid_argument("DDIM's eta must be >= 0, got " + std::to_string(eta));
  const torch::Tensor ac = alphas_cumprod_.cpu().contiguous();
  const torch::Tensor ac_prev = alphas_cumprod_prev_.cpu().contiguous();
  std::vector<double> sigma(static_cast<size_t>(num_timesteps_)), x0_coef(static_cast<size_t>(num_timesteps_)),
      direction(static_cast<size_t>(num_timesteps_));
  for (int64_t i = 0; i < num_timesteps_; ++i) {
    const double a = ac.data_ptr<double>()[i];
    const double a_prev = ac_prev.data_ptr<double>()[i];
    const double s = eta * std::sqrt((1.0 - a_prev) / (1.0 - a)) * std::sqrt(1.0 - a / a_prev);  // eq. 16
    sigma[static_cast<size_t>(i)] = s;
    x0_coef[static_cast<size_t>(i)] = std::sqrt(a_prev);
    direction[static_cast<size_t>(i)] = std::sqrt(std::max(1.0 - a_prev - s * s, 0.0));  // eq. 12, "direction to x_t"
  }
  const torch::Device device = betas_.device();
  return {eta, to_table(sigma).to(device), to_table(x0_coef).to(device), to_table(direction).to(device)};
}

torch::Tensor GaussianDiffusion::ddim_sample(const DdimTables& tables, const torch::Tensor& output, const torch::Tensor& x_t,
                                             const torch::Tensor& t, const torch::Tensor& noise, bool clip_denoised) const {
  const torch::Tensor eps = split_model_output(output, x_t).eps;
  torch::Tensor pred_x0 = predict_x0_from_eps(x_t, t, eps);
  torch::Tensor pred_eps = eps;
  if (clip_denoised) {
    pred_x0 = pred_x0.clamp(-1.0, 1.0);
    pred_eps = predict_eps_from_x0(x_t, t, pred_x0);
  }
  const torch::Tensor mean = extract(tables.x0_coef, t, x_t) * pred_x0 +
                             extract(tables.direction_coef, t, x_t) * pred_eps;  // eq. 12
  if (tables.eta == 0.0) return mean;
  std::vector<int64_t> shape(static_cast<size_t>(x_t.dim()), 1);
  shape[0] = x_t.size(0);
  const torch::Tensor nonzero_mask = (t != 0).to(x_t.scalar_type()).view(shape);
  return mean + nonzero_mask * extract(tables.sigma, t, x_t) * noise;
}

torch::Tensor GaussianDiffusion::prior_bpd(const torch::Tensor& x0) const {
  const torch::Tensor t_last =
      torch::full({x0.size(0)}, num_timesteps_ - 1, torch::TensorOptions().dtype(torch::kLong).device(x0.device()));
  const DiagonalGaussian q_t = q_mean_variance(x0, t_last);
  const torch::Tensor zeros = torch::zeros_like(x0);
  return mean_flat(normal_kl(q_t.mean, q_t.log_variance, zeros, zeros)) / kLn2;
}

torch::Tensor GaussianDiffusion::vb_terms_bpd(const torch::Tensor& output, const torch::Tensor& x0, const torch::Tensor& x_t,
                                              const torch::Tensor& t, bool clip_denoised) const {
  return vb_terms_bpd(p_mean_variance(output, x_t, t, clip_denoised), x0, x_t, t);
}

torch::Tensor GaussianDiffusion::vb_terms_bpd(const ReverseStep& p, const torch::Tensor& x0, const torch::Tensor& x_t,
                                              const torch::Tensor& t) const {
  const DiagonalGaussian q = q_posterior(x0, x_t, t);
  const torch::Tensor kl = mean_flat(normal_kl(q.mean, q.log_variance, p.mean, p.log_variance)) / kLn2;
  const torch::Tensor decoder_nll =
      -mean_flat(discretized_gaussian_log_likelihood(x0, p.mean, 0.5 * p.log_variance)) / kLn2;
  return torch::where(t.to(kl.device()) == 0, decoder_nll, kl);
}

torch::Tensor GaussianDiffusion::simple_loss(const torch::Tensor& eps_pred, const torch::Tensor& noise) {
  return mean_flat((noise - eps_pred).pow(2));
}

BoundTerms GaussianDiffusion::calc_bpd_loop(const ModelFn& model, const torch::Tensor& x0, bool clip_denoised,
                                            std::optional<at::Generator> generator) const {
  torch::NoGradGuard no_grad;
  const int64_t batch = x0.size(0);
  const auto options = x0.options();
  torch::Tensor vb = torch::empty({batch, num_timesteps_}, options);
  torch::Tensor xstart_mse = torch::empty({batch, num_timesteps_}, options);
  torch::Tensor mse = torch::empty({batch, num_timesteps_}, options);
  for (int64_t index = num_timesteps_ - 1; index >= 0; --index) {
    const torch::Tensor t = torch::full({batch}, index, options.dtype(torch::kLong));
    const torch::Tensor noise = torch::randn(x0.sizes(), generator, options);
    const torch::Tensor x_t = q_sample(x0, t, noise);
    const ReverseStep p = p_mean_variance(model(x_t, model_timesteps(t)), x_t, t, clip_denoised);
    vb.select(1, index).copy_(vb_terms_bpd(p, x0, x_t, t));
    xstart_mse.select(1, index).copy_(mean_flat((p.pred_x0 - x0).pow(2)));
    mse.select(1, index).copy_(mean_flat((p.eps - noise).pow(2)));
  }
  const torch::Tensor prior = prior_bpd(x0);
  return {vb.sum(1) + prior, prior, vb, xstart_mse, mse};
}

}  // namespace ddpm
