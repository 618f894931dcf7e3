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

// The "key: value" lines of a shape signature, in order.
std::vector<std::pair<std::string, std::string>> signature_lines(const std::string& signature) {
  std::vector<std::pair<std::string, std::string>> lines;
  std::istringstream in(signature);
  std::string line;
  while (std::getline(in, line)) {
    const size_t colon = line.find(": ");
    if (colon == std::string::npos) continue;
    lines.emplace_back(line.substr(0, colon), line.substr(colon + 2));
  }
  return lines;
}

// "model.channels 32 in the checkpoint, 64 in the config; ..." for the keys of two signatures that differ. A key
// can be absent on one side: a signature leaves out a key whose value does not change the model (a fixed variance).
std::string shape_differences(const std::string& saved, const std::string& current) {
  const auto a = signature_lines(saved), b = signature_lines(current);
  const auto find = [](const auto& lines, const std::string& key) -> const std::string* {
    for (const auto& [k, v] : lines) {
      if (k == key) return &v;
    }
    return nullptr;
  };
  std::string out;
  const auto add = [&](const std::string& text) { out += (out.empty() ? "" : "; ") + text; };
  const auto one_sided = [&](const std::string& key, const std::string& value, const char* where, const char* other) {
    add(key + " " + value + " in the " + where + ", a kind with the default model shape in the " + other +
        " (the key is recorded only where it changes the model)");
  };
  for (const auto& [key, value] : a) {
    const std::string* other = find(b, key);
    if (other == nullptr) {
      one_sided(key, value, "checkpoint", "config");
    } else if (*other != value) {
      add(key + " " + value + " in the checkpoint, " + *other + " in the config");
    }
  }
  for (const auto& [key, value] : b) {
    if (find(a, key) == nullptr) one_sided(key, value, "config", "checkpoint");
  }
  return out;
}

}  // namespace

void require_model_shape(const Checkpoint& checkpoint, const std::string& expected) {
  const nlohmann::json meta = nlohmann::json::parse(checkpoint.metadata);
  const std::string saved = meta.at("model_shape").get<std::string>();
  if (saved != expected) {
    throw std::runtime_error("it holds a model of another shape:\n" + saved + "the config has\n" + expected);
  }
}

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
  for (const auto& [name, tensor] : extra_state) checkpoint.tensors[name] = tensor.detach().cpu();
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
  absent_extra_state.clear();
  for (auto& [name, tensor] : extra_state) {
    if (checkpoint.tensors.count(name) == 0) {
      absent_extra_state.push_back(name);
    } else {
      load_state_tensor(checkpoint.tensors, name, tensor);
    }
  }
  step = checkpoint.step;
  loader.epoch = meta.at("loader").at("epoch").get<int64_t>();
  loader.position = meta.at("loader").at("position").get<int64_t>();
  if (saved_world == label.world_size) restore_generator_states(checkpoint.tensors, rank, device);
  return saved_world;
}

}  // namespace ddpm
