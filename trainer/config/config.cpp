#include "trainer/config/config.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <limits>
#include <map>
#include <sstream>

#include "trainer/config/key_types.h"

namespace ddpm {
using config_detail::did_you_mean;
using config_detail::Field;
using config_detail::find_field;
using config_detail::Part;
using config_detail::schema;
using config_detail::section_names;

namespace {

// Where a value came from, for messages: "configs/x.yaml:12:5" or "--set train.lr".
std::string where(const Config& config, const YAML::Node& node) {
  const YAML::Mark mark = node.Mark();
  if (mark.is_null()) return config.source;
  return config.source + ":" + std::to_string(mark.line + 1) + ":" + std::to_string(mark.column + 1);
}

void read_field(Config& config, const Field& field, const YAML::Node& node, const std::string& origin) {
  try {
    field.read(config, node);
  } catch (const YAML::BadConversion&) {
    const std::string shown = node.IsScalar()     ? "'" + node.Scalar() + "'"
                              : node.IsNull()     ? "an empty value"
                              : node.IsSequence() ? "a list"
                                                  : "a mapping";
    throw ConfigError(origin + ": " + field.path() + ": expected " + field.expected + ", got " + shown);
  } catch (const std::invalid_argument& e) {
    throw ConfigError(origin + ": " + field.path() + ": " + e.what());
  }
}


}  // namespace
Config::Config() {
  for (const Field& f : schema()) f.reset(*this);
}

std::vector<std::string> config_keys() {
  std::vector<std::string> keys;
  for (const Field& f : schema()) keys.push_back(f.path());
  return keys;
}

namespace {

ConfigError invalid_yaml(const std::string& path, const YAML::ParserException& e) {
  return ConfigError(path + ":" + std::to_string(e.mark.line + 1) + ":" + std::to_string(e.mark.column + 1) +
                     ": invalid YAML: " + e.msg);
}

// A mapping key as text. A list or a mapping used as a key ("? [a, b]: 1") is a ConfigError, not a yaml-cpp
// conversion error; a null key reads "null" (and is then an unknown name).
std::string key_name(const Config& config, const YAML::Node& key, const std::string& expected) {
  if (key.IsSequence() || key.IsMap()) {
    throw ConfigError(where(config, key) + ": expected " + expected + ", got " + (key.IsMap() ? "a mapping" : "a list"));
  }
  return key.as<std::string>();
}

// The loaded root node to a checked Config (config.source = path).
Config config_from_yaml(const YAML::Node& root, const std::string& path, const std::vector<std::string>& overrides) {
  Config config;
  config.source = path;
  const YAML::Node& const_root = root;  // const lookups never insert keys
  // An empty file is a mistake far more often than a wish for every default (which `{}` says explicitly):
  // training would start the default run in the default run directory.
  if (const_root.IsNull()) throw ConfigError(path + ": the config file is empty (write {} to take every default)");
  if (!const_root.IsMap()) throw ConfigError(path + ": the config must be a mapping of sections (run, data, ...)");
  const std::vector<std::string> sections = section_names();
  std::vector<std::string> seen;  // "section" and "section.key": YAML lets a later duplicate win silently
  const auto first_time = [&seen, &config](const std::string& name, const YAML::Node& node, const char* what) {
    if (std::find(seen.begin(), seen.end(), name) != seen.end()) {
      throw ConfigError(where(config, node) + ": duplicate " + what + " '" + name + "'");
    }
    seen.push_back(name);
  };
  for (const auto& section_entry : const_root) {
    const std::string section = key_name(config, section_entry.first, "a section name");
    if (std::find(sections.begin(), sections.end(), section) == sections.end()) {
      throw ConfigError(where(config, section_entry.first) + ": unknown section '" + section + "'" +
                        did_you_mean(section, sections));
    }
    first_time(section, section_entry.first, "section");
    const YAML::Node& body = section_entry.second;
    if (body.IsNull()) continue;
    if (!body.IsMap()) throw ConfigError(where(config, body) + ": " + section + ": expected a mapping of keys");
    std::vector<std::string> keys;
    for (const Field& f : schema()) {
      if (f.section == section) keys.push_back(f.key);
    }
    for (const auto& entry : body) {
      const std::string key = key_name(config, entry.first, "a key name of section " + section);
      const Field* field = find_field(section + "." + key);
      if (field == nullptr) {
        throw ConfigError(where(config, entry.first) + ": unknown key '" + section + "." + key + "'" +
                          did_you_mean(key, keys));
      }
      first_time(section + "." + key, entry.first, "key");
      read_field(config, *field, entry.second, where(config, entry.second));
    }
  }
  for (const std::string& assignment : overrides) apply_override(config, assignment);
  validate(config);
  return config;
}

}  // namespace

Config load_config(const std::string& path, const std::vector<std::string>& overrides) {
  YAML::Node root;
  try {
    root = YAML::LoadFile(path);
  } catch (const YAML::BadFile&) {
    throw ConfigError(path + ": cannot open the config file");
  } catch (const YAML::ParserException& e) {
    throw invalid_yaml(path, e);
  }
  return config_from_yaml(root, path, overrides);
}

Config parse_config(const std::string& text, const std::string& source, const std::vector<std::string>& overrides) {
  YAML::Node root;
  try {
    root = YAML::Load(text);
  } catch (const YAML::ParserException& e) {
    throw invalid_yaml(source, e);
  }
  return config_from_yaml(root, source, overrides);
}

void apply_override(Config& config, const std::string& assignment) {
  const size_t equals = assignment.find('=');
  if (equals == std::string::npos || equals == 0) {
    throw ConfigError("--set: '" + assignment + "': expected section.key=value");
  }
  const std::string path = assignment.substr(0, equals);
  const std::string text = assignment.substr(equals + 1);
  const Field* field = find_field(path);
  if (field == nullptr) throw ConfigError("--set: unknown key '" + path + "'" + did_you_mean(path, config_keys()));
  YAML::Node value;
  try {
    value = YAML::Load(text);
  } catch (const YAML::ParserException& e) {
    throw ConfigError("--set: " + path + ": cannot parse '" + text + "': " + e.msg);
  }
  if (value.IsNull() && !text.empty()) value = YAML::Node(text);
  read_field(config, *field, value, "--set");
}

void validate(const Config& config) {
  const std::string& file = config.source;
  // The U-Net halves the resolution between levels: the image must divide evenly at every level.
  const int64_t levels = static_cast<int64_t>(config.model.channel_mult.size());
  // 63 halvings or more: no int64 size divides evenly, and 1 << 63 would not fit.
  const bool too_many = levels - 1 >= 63;
  if (too_many || config.data.image_size % (int64_t{1} << (levels - 1)) != 0) {
    throw ConfigError(file + ": data.image_size " + std::to_string(config.data.image_size) +
                      " cannot be halved " + std::to_string(levels - 1) + " times by a U-Net with " +
                      std::to_string(levels) + " levels (model.channel_mult): it must be a multiple of " +
                      (too_many ? "2^" + std::to_string(levels - 1) : std::to_string(int64_t{1} << (levels - 1))));
  }
  for (int64_t resolution : config.model.attention_resolutions) {
    bool reached = false;
    for (int64_t level = 0; level < levels; ++level) reached |= (config.data.image_size >> level) == resolution;
    if (!reached) {
      throw ConfigError(file + ": model.attention_resolutions: " + std::to_string(resolution) +
                        " is not a resolution of this U-Net (image_size " + std::to_string(config.data.image_size) +
                        " halved per level)");
    }
  }
  // The linear schedule's β_T = 20/T reaches 1 at T = 20: ᾱ_T = 0 and x_0 cannot be recovered from ε.
  if (config.diffusion.schedule == BetaSchedule::kLinear && config.diffusion.timesteps <= 20) {
    throw ConfigError(file + ": diffusion.timesteps " + std::to_string(config.diffusion.timesteps) +
                      " is too few for the linear schedule (β_T = 20/T must stay below 1): use more than 20 or "
                      "schedule: cosine");
  }
  if (config.train.batch_size % config.train.micro_batches != 0) {
    throw ConfigError(file + ": train.batch_size " + std::to_string(config.train.batch_size) +
                      " must be divisible by train.micro_batches " + std::to_string(config.train.micro_batches));
  }
  // The hybrid's bound term sees a frozen mean and trains only the variance: with a fixed one it adds a constant.
  if (config.diffusion.loss == Objective::kHybrid && !learns_variance(config.diffusion.model_variance)) {
    throw ConfigError(file + ": diffusion.loss hybrid trains the variance with its bound term, and diffusion.model_variance " +
                      choice_name(config.diffusion.model_variance) +
                      " is fixed: use learned_range (or learned), or diffusion.loss simple");
  }
  // L_simple gives v no gradient: the zero-initialized output would leave a learned variance at v = 0 for good.
  if (config.diffusion.loss == Objective::kSimple && learns_variance(config.diffusion.model_variance)) {
    throw ConfigError(file + ": diffusion.loss simple does not train diffusion.model_variance " +
                      choice_name(config.diffusion.model_variance) +
                      " (the ε-MSE gives the variance no gradient): use hybrid (L_simple + 0.001·L_vlb), kl or rescaled_kl");
  }
  // Autotuning picks whichever algorithm was fastest this time, deterministic or not.
  if (config.train.deterministic && config.train.cudnn_benchmark) {
    throw ConfigError(file + ": train.deterministic and train.cudnn_benchmark are both true: autotuning may pick a "
                      "non-deterministic algorithm; set one of them to false");
  }
  if (config.model.channels % 32 != 0) {
    throw ConfigError(file + ": model.channels " + std::to_string(config.model.channels) +
                      " must be a multiple of 32 (GroupNorm with 32 groups)");
  }
}

std::string to_yaml(const Config& config) {
  YAML::Emitter out;
  out << YAML::BeginMap;
  std::string open_section;
  for (const Field& f : schema()) {
    if (f.section != open_section) {
      if (!open_section.empty()) out << YAML::EndMap;
      out << YAML::Key << f.section << YAML::Value << YAML::BeginMap;
      open_section = f.section;
    }
    out << YAML::Key << f.key << YAML::Value;
    f.write(config, out);
  }
  out << YAML::EndMap << YAML::EndMap;
  return std::string(out.c_str()) + "\n";
}

std::string describe_keys() {
  std::ostringstream out;
  for (const Field& f : schema()) {
    std::string type = f.expected;
    if (!f.choices.empty()) {
      type.clear();
      for (const std::string& c : f.choices) type += (type.empty() ? "one of " : " | ") + c;
    }
    out << f.path() << "  (" << type << "; default " << (f.default_text.empty() ? "\"\"" : f.default_text) << ")"
        << (f.part == Part::kShape ? " [must match to resume]" : "") << "\n    " << f.help << "\n";
  }
  return out.str();
}

std::string model_shape_signature(const Config& config) {
  std::string signature;
  for (const Field& f : schema()) {
    if (f.part != Part::kShape) continue;
    const std::string value = f.signature(config);
    if (!value.empty()) signature += f.path() + ": " + value + "\n";
  }
  return signature;
}

}  // namespace ddpm
