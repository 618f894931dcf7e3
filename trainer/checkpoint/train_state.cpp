#include "trainer/checkpoint/train_state.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <sstream>
#include <stdexcept>

#include "trainer/checkpoint/rng_state.h"

namespace ddpm {
namespace {

std::vector<std::string> parameter_names(const UNet& model) {
  std::vector<std::string> names;
  for (const auto& item : model->named_parameters()) names.push_back(item.key());
  return names;
}

// "model.channels 32 in the checkpoint, 64 in the config; ..." for the lines of two signatures that differ.
std::string shape_differences(const std::string& saved, const std::string& current) {
  std::istringstream a(saved), b(current);
  std::string line_a, line_b, out;
  if (std::count(saved.begin(), saved.end(), '\n') != std::count(current.begin(), current.end(), '\n')) {
    return "the checkpoint was written by a build with another shape description";
  }
  while (std::getline(a, line_a) && std::getline(b, line_b)) {
    if (line_a == line_b) continue;
    const size_t colon = line_a.find(": ");
    out += (out.empty() ? "" : "; ") + line_a.substr(0, colon) + " " + line_a.substr(colon + 2) + " in the checkpoint, " +
           line_b.substr(line_b.find(": ") + 2) + " in the config";
  }
  return out;
}

}  // namespace

TrainState::TrainState(UNet built, const AdamOptions& adam, const std::vector<double>& ema_rates)
    : model(std::move(built)),
      parameters(model->parameters()),
      names(parameter_names(model)),
      optimizer(parameters, names, adam),
      ema(*model, ema_rates) {}

Checkpoint TrainState::to_checkpoint(const CheckpointLabel& label, const std::vector<std::string>& rank_rng) const {
  torch::NoGradGuard no_grad;
  Checkpoint checkpoint;
  checkpoint.step = step;
  nlohmann::json meta;
  meta["model_shape"] = label.model_shape;
  meta["config"] = label.config;
  meta["world_size"] = label.world_size;
  meta["loader"] = {{"epoch", loader.epoch}, {"position", loader.position}};
  checkpoint.metadata = meta.dump();
  for (size_t i = 0; i < parameters.size(); ++i) checkpoint.tensors["model/" + names[i]] = parameters[i].detach().cpu();
  for (auto& [name, tensor] : ema.state()) checkpoint.tensors[name] = tensor.cpu();
  for (auto& [name, tensor] : optimizer.state()) checkpoint.tensors[name] = tensor.cpu();
  for (size_t r = 0; r < rank_rng.size(); ++r) unpack_generator_states(rank_rng[r], static_cast<int>(r), checkpoint.tensors);
  return checkpoint;
}

int TrainState::restore(const Checkpoint& checkpoint, const CheckpointLabel& label, const std::string& run_dir, int rank,
                        const torch::Device& device) {
  const nlohmann::json meta = nlohmann::json::parse(checkpoint.metadata);
  const std::string differences = shape_differences(meta.at("model_shape").get<std::string>(), label.model_shape);
  if (!differences.empty()) {
    throw std::runtime_error("run directory " + run_dir + " holds checkpoints of another run (model or data shape " +
                             "differs: " + differences + "); choose another run.dir, or use that run's config");
  }
  const int saved_world = meta.at("world_size").get<int>();
  for (size_t i = 0; i < parameters.size(); ++i) load_state_tensor(checkpoint.tensors, "model/" + names[i], parameters[i]);
  ema.load_state(checkpoint.tensors);
  optimizer.load_state(checkpoint.tensors);
  step = checkpoint.step;
  loader.epoch = meta.at("loader").at("epoch").get<int64_t>();
  loader.position = meta.at("loader").at("position").get<int64_t>();
  if (saved_world == label.world_size) restore_generator_states(checkpoint.tensors, rank, device);
  return saved_world;
}

}  // namespace ddpm
