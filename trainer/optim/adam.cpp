#include "trainer/optim/adam.h"

#include <stdexcept>

namespace ddpm {

Adam::Adam(std::vector<torch::Tensor> parameters, std::vector<std::string> names, AdamOptions options)
    : parameters_(std::move(parameters)), names_(std::move(names)), options_(options) {
  if (names_.size() != parameters_.size()) throw std::invalid_argument("Adam: one name per parameter");
  torch::NoGradGuard no_grad;
  for (const torch::Tensor& p : parameters_) {
    exp_avg_.push_back(torch::zeros_like(p));  // zeros_like keeps the parameter's memory format
    exp_avg_sq_.push_back(torch::zeros_like(p));
    steps_.push_back(torch::zeros({}, p.options().dtype(torch::kFloat32)));
  }
}

void Adam::zero_grad() {
  for (torch::Tensor& p : parameters_) p.mutable_grad().reset();
}

void Adam::step(double lr, const torch::Tensor& skip) { take_step(lr, skip); }

void Adam::step(const torch::Tensor& lr, const torch::Tensor& skip) {
  const bool float32 = lr.scalar_type() == torch::kFloat32;
  const bool cpu_float64 = lr.scalar_type() == torch::kFloat64 && lr.is_cpu();
  if (lr.dim() != 0 || !(float32 || cpu_float64)) {
    throw std::invalid_argument("Adam: a tensor learning rate must be a 0-dim float32 tensor (or float64 on the CPU)");
  }
  take_step(lr, skip);
}

void Adam::take_step(const LearningRate& lr, const torch::Tensor& skip) {
  torch::NoGradGuard no_grad;
  // t ← t + 1 only for a step taken.
  at::_foreach_add_(steps_, 1.0 - skip);
  if (!options_.fused) return step_per_tensor(lr, skip);
  std::vector<torch::Tensor> grads;
  for (const torch::Tensor& p : parameters_) grads.push_back(p.grad());
  const auto fused = [&](const auto& rate) {
    at::_fused_adam_(parameters_, grads, exp_avg_, exp_avg_sq_, /*max_exp_avg_sqs=*/{}, steps_, rate, options_.beta1,
                     options_.beta2, /*weight_decay=*/0.0, options_.eps, /*amsgrad=*/false, /*maximize=*/false,
                     /*grad_scale=*/std::nullopt, /*found_inf=*/skip);
  };
  std::visit(fused, lr);
}

void Adam::step_per_tensor(const LearningRate& lr, const torch::Tensor& skip) {
  const torch::Tensor take = skip == 0;
  const torch::Tensor t = steps_.front().to(torch::kFloat64);
  const torch::Tensor bias_correction1 = 1.0 - torch::pow(options_.beta1, t);
  const torch::Tensor bias_correction2_sqrt = torch::sqrt(1.0 - torch::pow(options_.beta2, t));
  const torch::Tensor step_size =
      std::visit([&](const auto& rate) { return torch::Tensor(rate / bias_correction1); }, lr).to(torch::kFloat32);
  const torch::Tensor root2 = bias_correction2_sqrt.to(torch::kFloat32);
  for (size_t i = 0; i < parameters_.size(); ++i) {
    const torch::Tensor& g = parameters_[i].grad();
    const torch::Tensor m = exp_avg_[i].lerp(g, 1.0 - options_.beta1);               // m_t = β1 m + (1 − β1) g
    const torch::Tensor v = exp_avg_sq_[i] * options_.beta2 + (1.0 - options_.beta2) * g * g;  // v_t
    const torch::Tensor update = step_size * m / (v.sqrt() / root2 + options_.eps);
    // where(): a skipped step's gradients may be NaN, and NaN · 0 is NaN.
    parameters_[i].copy_(torch::where(take, parameters_[i] - update, parameters_[i]));
    exp_avg_[i].copy_(torch::where(take, m, exp_avg_[i]));
    exp_avg_sq_[i].copy_(torch::where(take, v, exp_avg_sq_[i]));
  }
}

StateDict Adam::state() const {
  std::map<std::string, torch::Tensor> out;
  out["adam/step"] = steps_.empty() ? torch::zeros({}) : steps_.front();
  for (size_t i = 0; i < parameters_.size(); ++i) {
    out["adam/exp_avg/" + names_[i]] = exp_avg_[i];
    out["adam/exp_avg_sq/" + names_[i]] = exp_avg_sq_[i];
  }
  return out;
}

void Adam::load_state(const StateDict& tensors) {
  torch::NoGradGuard no_grad;
  const torch::Tensor& step = state_tensor(tensors, "adam/step", torch::zeros({}));
  for (size_t i = 0; i < parameters_.size(); ++i) {
    load_state_tensor(tensors, "adam/exp_avg/" + names_[i], exp_avg_[i]);
    load_state_tensor(tensors, "adam/exp_avg_sq/" + names_[i], exp_avg_sq_[i]);
    steps_[i].copy_(step);
  }
}

}  // namespace ddpm
