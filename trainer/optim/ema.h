// Exponential moving averages of the model's parameters, one shadow copy per rate (e.g. 0.9999 and
// 0.999): shadow ← rate · shadow + (1 - rate) · θ after every optimizer step. Buffers are copied as they are.
#pragma once
#include <torch/torch.h>

#include <map>
#include <string>
#include <vector>

#include "trainer/model/state_dict.h"

namespace ddpm {

// "ema_0.9999" for rate 0.9999: how a shadow's tensors are named in checkpoints ("ema_0.9999/<parameter>").
std::string ema_prefix(double rate);

class ExponentialMovingAverage {
 public:
  ExponentialMovingAverage(const torch::nn::Module& model, std::vector<double> rates);

  // One update of every shadow from the model's current parameters (multi-tensor ops, no host sync), unless
  // `skip` (a 0-dim float32 tensor on the device, 0 or 1) is 1: then every shadow stays bitwise as it was.
  void update(const torch::nn::Module& model, const torch::Tensor& skip);
  // Loads shadow `rate_index` into `model` (for sampling and evaluation).
  void copy_to(torch::nn::Module& model, size_t rate_index) const;

  const std::vector<double>& rates() const { return rates_; }
  // "ema_0.9999" for rate 0.9999: how the shadows are named in checkpoints.
  std::string prefix(size_t rate_index) const;
  // Every shadow tensor by checkpoint name ("ema_0.9999/<parameter name>"), and back.
  StateDict state() const;
  // Throws std::runtime_error naming a missing or mis-shaped tensor.
  void load_state(const StateDict& tensors);

 private:
  std::vector<double> rates_;
  std::vector<std::string> names_;                  // parameter names, in model order
  std::vector<std::vector<torch::Tensor>> shadows_;  // [rate][parameter]
};

}  // namespace ddpm
