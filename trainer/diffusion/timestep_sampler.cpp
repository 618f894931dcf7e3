#include "trainer/diffusion/timestep_sampler.h"

#include <stdexcept>

namespace ddpm {

LossSecondMomentSampler::LossSecondMomentSampler(int64_t num_timesteps, const torch::Device& device)
    : num_timesteps_(num_timesteps),
      history_(torch::zeros({num_timesteps, kHistory}, torch::TensorOptions().dtype(torch::kFloat64).device(device))),
      counts_(torch::zeros({num_timesteps}, torch::TensorOptions().dtype(torch::kLong).device(device))) {
  if (num_timesteps < 1) throw std::invalid_argument("LossSecondMomentSampler needs at least one timestep");
}

torch::Tensor LossSecondMomentSampler::warm() const { return (counts_ == kHistory).all(); }

torch::Tensor LossSecondMomentSampler::probabilities() const {
  torch::NoGradGuard no_grad;
  const double T = static_cast<double>(num_timesteps_);
  const torch::Tensor root_second_moment = history_.pow(2).mean(1).sqrt();  // √E[L_t²]
  const torch::Tensor total = root_second_moment.sum();
  const torch::Tensor p = root_second_moment / total * (1.0 - kUniformMix) + kUniformMix / T;
  // All-zero losses leave nothing to prefer: uniform (and no 0/0).
  return torch::where(warm() & (total > 0), p, torch::full_like(p, 1.0 / T));
}

LossSecondMomentSampler::Draw LossSecondMomentSampler::draw(const torch::Tensor& u, const torch::Tensor& uniform_t) const {
  torch::NoGradGuard no_grad;
  const torch::Tensor p = probabilities();
  const torch::Tensor cdf = p.cumsum(0);
  // The first t with u < F(t); u at or past F(T−1) (round-off) takes the last.
  const torch::Tensor by_cdf =
      torch::searchsorted(cdf, u.to(torch::kFloat64), /*out_int32=*/false, /*right=*/true).clamp_max(num_timesteps_ - 1);
  const torch::Tensor is_warm = warm();
  Draw out;
  out.t = torch::where(is_warm, by_cdf, uniform_t.to(torch::kLong));
  const torch::Tensor weights = 1.0 / (static_cast<double>(num_timesteps_) * p.index_select(0, out.t));
  out.weights = torch::where(is_warm, weights, torch::ones_like(weights));
  return out;
}

void LossSecondMomentSampler::update(const torch::Tensor& t, const torch::Tensor& losses, const torch::Tensor& skip) {
  torch::NoGradGuard no_grad;
  const int64_t M = t.size(0);
  if (M == 0) return;
  const int64_t T = num_timesteps_;
  const auto longs = counts_.options();
  // Group the entries by t, keeping their order within a t (a stable sort): the new entries of t are then
  // sorted[start_t .. start_t + n_t), oldest first.
  const auto [sorted_t, order] = torch::sort(t.to(torch::kLong), /*stable=*/true, /*dim=*/0, /*descending=*/false);
  const torch::Tensor sorted_loss = losses.to(torch::kFloat64).index_select(0, order);
  const torch::Tensor all_t = torch::arange(T, longs);
  const torch::Tensor start = torch::searchsorted(sorted_t, all_t);
  const torch::Tensor n = torch::searchsorted(sorted_t, all_t, /*out_int32=*/false, /*right=*/true) - start;
  // Row t becomes the last kHistory of (its c_t old losses, then its n_t new ones): slot k holds element
  // e = max(c_t + n_t − kHistory, 0) + k of that sequence, an old one when e < c_t.
  const torch::Tensor total = counts_ + n;
  const torch::Tensor e = (total - kHistory).clamp_min(0).unsqueeze(1) + torch::arange(kHistory, longs).unsqueeze(0);
  const torch::Tensor c = counts_.unsqueeze(1);
  const torch::Tensor old_value = history_.gather(1, e.clamp_max(kHistory - 1));
  const torch::Tensor new_position = (start.unsqueeze(1) + e - c).clamp(0, M - 1);
  const torch::Tensor new_value = sorted_loss.index_select(0, new_position.flatten()).view({T, kHistory});
  const torch::Tensor updated =
      torch::where(e < c, old_value, torch::where(e < total.unsqueeze(1), new_value, torch::zeros_like(new_value)));
  const torch::Tensor counts = total.clamp_max(kHistory);
  history_.copy_(skip.defined() ? torch::where(skip, history_, updated) : updated);
  counts_.copy_(skip.defined() ? torch::where(skip, counts_, counts) : counts);
}

}  // namespace ddpm
