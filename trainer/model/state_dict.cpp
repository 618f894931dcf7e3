#include "trainer/model/state_dict.h"

#include <stdexcept>

namespace ddpm {

const torch::Tensor& state_tensor(const StateDict& dict, const std::string& name, const torch::Tensor& like) {
  const auto found = dict.find(name);
  if (found == dict.end()) throw std::runtime_error("the checkpoint has no tensor '" + name + "'");
  if (found->second.sizes() != like.sizes()) {
    throw std::runtime_error("tensor '" + name + "' has shape " + c10::str(found->second.sizes()) +
                             " in the checkpoint, the model has " + c10::str(like.sizes()));
  }
  return found->second;
}

void load_state_tensor(const StateDict& dict, const std::string& name, torch::Tensor into) {
  torch::NoGradGuard no_grad;
  into.copy_(state_tensor(dict, name, into));
}

}  // namespace ddpm
