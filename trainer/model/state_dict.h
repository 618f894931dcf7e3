// Named tensors as a checkpoint holds them ("model/<parameter>", "ema_0.9999/<parameter>", "adam/..."), and the
// one way to take a tensor back out of them: find it by name, check its shape, copy it.
#pragma once
#include <torch/torch.h>

#include <map>
#include <string>

namespace ddpm {

using StateDict = std::map<std::string, torch::Tensor>;

// dict[name], checked to have the shape of `like`. Throws std::runtime_error naming the tensor when it is missing
// or shaped otherwise.
const torch::Tensor& state_tensor(const StateDict& dict, const std::string& name, const torch::Tensor& like);
// Copies dict[name] into `into` (its device, dtype and memory format kept), with the checks of state_tensor.
void load_state_tensor(const StateDict& dict, const std::string& name, torch::Tensor into);

}  // namespace ddpm
