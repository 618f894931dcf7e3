// Adam (Kingma & Ba 2015, Algorithm 1; no weight decay, as in the DDPM paper) over all parameters at once.
// Two kernels with one state layout: ATen's fused multi-tensor kernel (one pass over every parameter, the
// default), or a loop of ordinary tensor ops per parameter (the baseline the benchmark measures it against).
// A step can be skipped on the device (`skip` = 1: non-finite gradients on some rank), so deciding it needs no
// host sync; a skipped step leaves parameters, moments and the step count bitwise unchanged.
#pragma once
#include <torch/torch.h>

#include <map>
#include <string>
#include <variant>
#include <vector>

#include "trainer/model/state_dict.h"

namespace ddpm {

struct AdamOptions {
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  bool fused = true;
};

class Adam {
 public:
  // `names` name the parameters in checkpoints (the model's named_parameters keys).
  Adam(std::vector<torch::Tensor> parameters, std::vector<std::string> names, AdamOptions options);

  // Drops the gradients (PyTorch's zero_grad(set_to_none=True)): the next backward then hands each parameter its
  // gradient as computed, where zeroed gradients cost a fill and then one addition kernel per parameter tensor
  // (`aten::add_` under AccumulateGrad in the profile of `ddpm bench --profile-steps`).
  void zero_grad();
  // θ ← θ − lr · m̂ / (√v̂ + ε) with bias-corrected moments, unless `skip` (a 0-dim float32 tensor on the
  // parameters' device, 0 or 1) is 1.
  void step(double lr, const torch::Tensor& skip);
  // The same with lr a 0-dim float32 tensor on the parameters' device, read by the kernels there: a captured
  // CUDA graph of the step then follows the schedule on every replay (a double would be frozen into it). On the
  // CPU it may be float64, and then steps bit for bit as the double does.
  void step(const torch::Tensor& lr, const torch::Tensor& skip);

  // "adam/step", "adam/exp_avg/<name>", "adam/exp_avg_sq/<name>" (on the device; callers copy as needed).
  StateDict state() const;
  // Throws std::runtime_error naming a missing or mis-shaped tensor.
  void load_state(const StateDict& tensors);

 private:
  // lr: a double or a 0-dim tensor (then float32 on the device).
  using LearningRate = std::variant<double, torch::Tensor>;
  void take_step(const LearningRate& lr, const torch::Tensor& skip);
  void step_per_tensor(const LearningRate& lr, const torch::Tensor& skip);

  std::vector<torch::Tensor> parameters_;
  std::vector<std::string> names_;
  AdamOptions options_;
  std::vector<torch::Tensor> exp_avg_, exp_avg_sq_;
  std::vector<torch::Tensor> steps_;  // one float32 scalar per parameter (the fused kernel's layout), all equal
};

}  // namespace ddpm
