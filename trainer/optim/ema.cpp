#include "trainer/optim/ema.h"

#include <cstdio>
#include <stdexcept>

namespace ddpm {

ExponentialMovingAverage::ExponentialMovingAverage(const torch::nn::Module& model, std::vector<double> rates)
    : rates_(std::move(rates)) {
  torch::NoGradGuard no_grad;
  for (const auto& item : model.named_parameters()) names_.push_back(item.key());
  for (size_t r = 0; r < rates_.size(); ++r) {
    std::vector<torch::Tensor> copies;
    for (const auto& item : model.named_parameters()) copies.push_back(item.value().detach().clone());
    shadows_.push_back(std::move(copies));
  }
}

void ExponentialMovingAverage::update(const torch::nn::Module& model, const torch::Tensor& skip) {
  torch::NoGradGuard no_grad;
  std::vector<torch::Tensor> params;
  for (const auto& item : model.named_parameters()) params.push_back(item.value().detach());
  const torch::Tensor take = 1.0 - skip;
  for (size_t r = 0; r < rates_.size(); ++r) {
    // shadow + w (θ − shadow) with w = (1 − rate) = rate · shadow + (1 − rate) · θ. The weight is a device tensor,
    // 0 for a skipped step (θ is then unchanged and finite, so the shadow stays bitwise the same).
    std::vector<torch::Tensor> step = at::_foreach_sub(params, shadows_[r]);
    at::_foreach_mul_(step, take * (1.0 - rates_[r]));
    at::_foreach_add_(shadows_[r], step);
  }
}

void ExponentialMovingAverage::copy_to(torch::nn::Module& model, size_t rate_index) const {
  if (rate_index >= shadows_.size()) throw std::out_of_range("no EMA with index " + std::to_string(rate_index));
  torch::NoGradGuard no_grad;
  size_t i = 0;
  for (auto& item : model.named_parameters()) item.value().copy_(shadows_[rate_index][i++]);
}

std::string ema_prefix(double rate) {
  char text[64];
  std::snprintf(text, sizeof(text), "ema_%.10g", rate);
  return text;
}

std::string ExponentialMovingAverage::prefix(size_t rate_index) const { return ema_prefix(rates_.at(rate_index)); }

StateDict ExponentialMovingAverage::state() const {
  std::map<std::string, torch::Tensor> tensors;
  for (size_t r = 0; r < shadows_.size(); ++r) {
    for (size_t i = 0; i < names_.size(); ++i) tensors[prefix(r) + "/" + names_[i]] = shadows_[r][i];
  }
  return tensors;
}

void ExponentialMovingAverage::load_state(const StateDict& tensors) {
  for (size_t r = 0; r < shadows_.size(); ++r) {
    for (size_t i = 0; i < names_.size(); ++i) load_state_tensor(tensors, prefix(r) + "/" + names_[i], shadows_[r][i]);
  }
}

}  // namespace ddpm
