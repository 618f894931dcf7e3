#include "trainer/config/config.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <limits>
#include <map>
#include <sstream>

namespace ddpm {
namespace {

// Where a value came from, for messages: "configs/x.yaml:12:5" or "--set train.lr".
std::string where(const Config& config, const YAML::Node& node) {
  const YAML::Mark mark = node.Mark();
  if (mark.is_null()) return config.source;
  return config.source + ":" + std::to_string(mark.line + 1) + ":" + std::to_string(mark.column + 1);
}

size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<size_t> previous(b.size() + 1), current(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) previous[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    current[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      const size_t substitution = previous[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1);
      current[j] = std::min({previous[j] + 1, current[j - 1] + 1, substitution});
    }
    std::swap(previous, current);
  }
  return previous[b.size()];
}

std::string did_you_mean(const std::string& wrong, const std::vector<std::string>& candidates) {
  std::string best;
  size_t best_distance = std::numeric_limits<size_t>::max();
  for (const std::string& candidate : candidates) {
    const size_t distance = edit_distance(wrong, candidate);
    if (distance < best_distance) {
      best_distance = distance;
      best = candidate;
    }
  }
  if (best.empty() || best_distance > std::max<size_t>(2, wrong.size() / 3)) return "";
  return " (did you mean '" + best + "'?)";
}

// A key of the schema: how to read it from YAML (with its checks) and how to write it back.
struct Field {
  std::string section;
  std::string key;
  std::string expected;  // for type errors: "an integer", "a list of numbers", ...
  std::function<void(Config&, const YAML::Node&)> read;   // throws std::invalid_argument on a bad value
  std::function<void(const Config&, YAML::Emitter&)> write;
  std::string path() const { return section + "." + key; }
};

// Shortest text that reads back as the same double (0.0002, not 0.00020000000000000001).
std::string format_double(double value) {
  char buffer[64];
  for (int precision = 1; precision <= 17; ++precision) {
    std::snprintf(buffer, sizeof(buffer), "%.*g", precision, value);
    if (std::strtod(buffer, nullptr) == value) break;
  }
  std::string text(buffer);
  if (text.find_first_of(".eEn") == std::string::npos) text += ".0";  // keep it a float for readers
  return text;
}

template <class T>
void emit(YAML::Emitter& out, const T& value) {
  if constexpr (std::is_same_v<T, double>) {
    out << format_double(value);
  } else {
    out << value;
  }
}

// A path or name with a control character in it is a mistake (a stray carriage return at the end of a file
// lands in the last value), and could not be written back to YAML unchanged.
void reject_control_characters(const std::string& value) {
  for (size_t i = 0; i < value.size(); ++i) {
    const auto byte = static_cast<unsigned char>(value[i]);
    if (byte < 0x20 || byte == 0x7f) {
      char hex[8];
      std::snprintf(hex, sizeof(hex), "0x%02x", byte);
      throw std::invalid_argument(std::string("contains a control character (byte ") + hex + " at offset " +
                                  std::to_string(i) + " of the value)");
    }
  }
}

template <class T>
T scalar_as(const YAML::Node& node) {
  if (!node.IsScalar()) throw YAML::BadConversion(node.Mark());
  return node.as<T>();
}

template <class T, class Member>
Field make_field(std::string section, std::string key, std::string expected, Member member,
                 std::function<void(const T&)> check) {
  Field field;
  field.section = std::move(section);
  field.key = std::move(key);
  field.expected = std::move(expected);
  field.read = [member, check](Config& config, const YAML::Node& node) {
    T value;
    if constexpr (std::is_same_v<T, std::vector<int64_t>> || std::is_same_v<T, std::vector<double>>) {
      if (!node.IsSequence()) throw YAML::BadConversion(node.Mark());
      for (const YAML::Node& item : node) {
        try {
          value.push_back(scalar_as<typename T::value_type>(item));
        } catch (const YAML::BadConversion&) {
          const std::string shown = item.IsScalar() ? "'" + item.Scalar() + "'" : item.IsNull() ? "empty" : "not a single value";
          throw std::invalid_argument("entry " + std::to_string(value.size() + 1) + " of the list is " + shown +
                                      ", not a number" + (std::is_same_v<T, std::vector<int64_t>> ? " (an integer)" : ""));
        }
      }
    } else {
      value = scalar_as<T>(node);
    }
    if constexpr (std::is_same_v<T, std::string>) reject_control_characters(value);
    if (check) check(value);
    member(config) = value;
  };
  field.write = [member](const Config& config, YAML::Emitter& out) {
    const T& value = member(const_cast<Config&>(config));
    if constexpr (std::is_same_v<T, std::vector<int64_t>> || std::is_same_v<T, std::vector<double>>) {
      out << YAML::Flow << YAML::BeginSeq;
      for (const auto& item : value) emit(out, item);
      out << YAML::EndSeq;
    } else {
      emit(out, value);
    }
  };
  return field;
}

std::function<void(const int64_t&)> at_least(int64_t minimum) {
  return [minimum](const int64_t& v) {
    if (v < minimum) throw std::invalid_argument("must be at least " + std::to_string(minimum) + ", got " + std::to_string(v));
  };
}

std::function<void(const std::string&)> one_of(std::vector<std::string> choices) {
  return [choices](const std::string& v) {
    if (std::find(choices.begin(), choices.end(), v) != choices.end()) return;
    std::string list;
    for (const std::string& c : choices) list += (list.empty() ? "" : ", ") + c;
    throw std::invalid_argument("must be one of " + list + ", got '" + v + "'" + did_you_mean(v, choices));
  };
}

std::function<void(const double&)> in_range(double lo, double hi, bool lo_open = false) {
  return [lo, hi, lo_open](const double& v) {
    const bool ok = (lo_open ? v > lo : v >= lo) && v <= hi;
    if (!ok) {
      std::ostringstream message;
      message << "must be in " << (lo_open ? "(" : "[") << lo << ", " << hi << "], got " << v;
      throw std::invalid_argument(message.str());
    }
  };
}

std::function<void(const std::vector<int64_t>&)> positive_list(bool allow_empty) {
  return [allow_empty](const std::vector<int64_t>& v) {
    if (v.empty() && !allow_empty) throw std::invalid_argument("must not be empty");
    for (int64_t x : v) {
      if (x < 1) throw std::invalid_argument("entries must be at least 1, got " + std::to_string(x));
    }
  };
}

const std::vector<Field>& schema() {
  using S = std::string;
  using I = int64_t;
  using D = double;
  using VI = std::vector<int64_t>;
  using VD = std::vector<double>;
  static const std::vector<Field> fields = {
      make_field<S>("run", "dir", "a string", [](Config& c) -> S& { return c.run.dir; },
                    [](const S& v) { if (v.empty()) throw std::invalid_argument("must not be empty"); }),
      make_field<uint64_t>("run", "seed", "a non-negative integer", [](Config& c) -> uint64_t& { return c.run.seed; }, {}),
      make_field<S>("run", "device", "a string", [](Config& c) -> S& { return c.run.device; }, one_of({"auto", "cpu", "cuda"})),
      make_field<S>("data", "format", "a string", [](Config& c) -> S& { return c.data.format; },
                    one_of({"idx", "cifar10", "folder"})),
      make_field<S>("data", "path", "a string", [](Config& c) -> S& { return c.data.path; },
                    [](const S& v) { if (v.empty()) throw std::invalid_argument("must not be empty"); }),
      make_field<S>("data", "split", "a string", [](Config& c) -> S& { return c.data.split; }, one_of({"train", "test"})),
      make_field<I>("data", "image_size", "an integer", [](Config& c) -> I& { return c.data.image_size; }, at_least(1)),
      make_field<I>("data", "channels", "an integer", [](Config& c) -> I& { return c.data.channels; },
                    [](const I& v) { if (v != 1 && v != 3) throw std::invalid_argument("must be 1 or 3, got " + std::to_string(v)); }),
      make_field<bool>("data", "random_flip", "true or false", [](Config& c) -> bool& { return c.data.random_flip; }, {}),
      make_field<S>("data", "shard_tail", "a string", [](Config& c) -> S& { return c.data.shard_tail; }, one_of({"drop", "wrap"})),
      make_field<I>("data", "loader_threads", "an integer", [](Config& c) -> I& { return c.data.loader_threads; }, at_least(1)),
      make_field<I>("data", "prefetch_batches", "an integer", [](Config& c) -> I& { return c.data.prefetch_batches; }, at_least(1)),
      make_field<I>("model", "channels", "an integer", [](Config& c) -> I& { return c.model.channels; }, at_least(1)),
      make_field<VI>("model", "channel_mult", "a list of integers", [](Config& c) -> VI& { return c.model.channel_mult; },
                     positive_list(false)),
      make_field<I>("model", "num_res_blocks", "an integer", [](Config& c) -> I& { return c.model.num_res_blocks; }, at_least(1)),
      make_field<VI>("model", "attention_resolutions", "a list of integers",
                     [](Config& c) -> VI& { return c.model.attention_resolutions; }, positive_list(true)),
      make_field<D>("model", "dropout", "a number", [](Config& c) -> D& { return c.model.dropout; }, in_range(0.0, 0.99)),
      make_field<I>("diffusion", "timesteps", "an integer", [](Config& c) -> I& { return c.diffusion.timesteps; }, at_least(2)),
      make_field<S>("diffusion", "schedule", "a string", [](Config& c) -> S& { return c.diffusion.schedule; },
                    one_of({"linear", "cosine"})),
      make_field<S>("diffusion", "model_variance", "a string", [](Config& c) -> S& { return c.diffusion.model_variance; },
                    one_of({"fixed_large", "fixed_small"})),
      make_field<S>("diffusion", "loss", "a string", [](Config& c) -> S& { return c.diffusion.loss; }, one_of({"simple", "kl"})),
      make_field<I>("train", "steps", "an integer", [](Config& c) -> I& { return c.train.steps; }, at_least(1)),
      make_field<I>("train", "batch_size", "an integer", [](Config& c) -> I& { return c.train.batch_size; }, at_least(1)),
      make_field<I>("train", "micro_batches", "an integer", [](Config& c) -> I& { return c.train.micro_batches; }, at_least(1)),
      make_field<D>("train", "lr", "a number", [](Config& c) -> D& { return c.train.lr; }, in_range(0.0, 1.0, true)),
      make_field<I>("train", "warmup_steps", "an integer", [](Config& c) -> I& { return c.train.warmup_steps; }, at_least(0)),
      make_field<D>("train", "grad_clip", "a number", [](Config& c) -> D& { return c.train.grad_clip; },
                    [](const D& v) { if (!(v >= 0.0)) throw std::invalid_argument("must be >= 0 (0 turns clipping off)"); }),
      make_field<VD>("train", "ema_rates", "a list of numbers", [](Config& c) -> VD& { return c.train.ema_rates; },
                     [](const VD& v) { for (double r : v) in_range(0.0, 1.0, true)(r); }),
      make_field<I>("train", "log_every", "an integer", [](Config& c) -> I& { return c.train.log_every; }, at_least(1)),
      make_field<I>("train", "checkpoint_every", "an integer", [](Config& c) -> I& { return c.train.checkpoint_every; }, at_least(1)),
      make_field<I>("train", "keep_checkpoints", "an integer", [](Config& c) -> I& { return c.train.keep_checkpoints; }, at_least(1)),
      make_field<I>("train", "max_consecutive_skips", "an integer",
                    [](Config& c) -> I& { return c.train.max_consecutive_skips; }, at_least(1)),
      make_field<S>("train", "precision", "a string", [](Config& c) -> S& { return c.train.precision; }, one_of({"fp32", "bf16"})),
      make_field<bool>("train", "channels_last", "true or false", [](Config& c) -> bool& { return c.train.channels_last; }, {}),
      make_field<bool>("train", "fused_adam", "true or false", [](Config& c) -> bool& { return c.train.fused_adam; }, {}),
      make_field<bool>("train", "cuda_graph", "true or false", [](Config& c) -> bool& { return c.train.cuda_graph; }, {}),
      make_field<S>("distributed", "backend", "a string", [](Config& c) -> S& { return c.distributed.backend; },
                    one_of({"auto", "mpi", "nccl"})),
      make_field<D>("distributed", "bucket_mb", "a number", [](Config& c) -> D& { return c.distributed.bucket_mb; },
                    in_range(0.0, 4096.0, true)),
      make_field<D>("distributed", "first_bucket_mb", "a number", [](Config& c) -> D& { return c.distributed.first_bucket_mb; },
                    in_range(0.0, 4096.0, true)),
      make_field<I>("distributed", "replica_check_every", "an integer",
                    [](Config& c) -> I& { return c.distributed.replica_check_every; }, at_least(0)),
      make_field<D>("distributed", "timeout_seconds", "a number", [](Config& c) -> D& { return c.distributed.timeout_seconds; },
                    in_range(1.0, 86400.0)),
      make_field<bool>("distributed", "always_reduce", "true or false",
                       [](Config& c) -> bool& { return c.distributed.always_reduce; }, {}),
      make_field<bool>("monitoring", "enabled", "true or false", [](Config& c) -> bool& { return c.monitoring.enabled; }, {}),
      make_field<S>("monitoring", "bind_address", "a string", [](Config& c) -> S& { return c.monitoring.bind_address; },
                    [](const S& v) { if (v.empty()) throw std::invalid_argument("must not be empty"); }),
      make_field<I>("monitoring", "base_port", "an integer", [](Config& c) -> I& { return c.monitoring.base_port; },
                    [](const I& v) { if (v < 0 || v > 65535) throw std::invalid_argument("must be in [0, 65535], got " + std::to_string(v)); }),
      make_field<I>("monitoring", "bound_ranges", "an integer", [](Config& c) -> I& { return c.monitoring.bound_ranges; }, at_least(1)),
      make_field<I>("monitoring", "eval_every", "an integer", [](Config& c) -> I& { return c.monitoring.eval_every; }, at_least(0)),
      make_field<I>("monitoring", "eval_images", "an integer", [](Config& c) -> I& { return c.monitoring.eval_images; }, at_least(1)),
  };
  return fields;
}

std::vector<std::string> section_names() {
  std::vector<std::string> names;
  for (const Field& f : schema()) {
    if (std::find(names.begin(), names.end(), f.section) == names.end()) names.push_back(f.section);
  }
  return names;
}

const Field* find_field(const std::string& path) {
  for (const Field& f : schema()) {
    if (f.path() == path) return &f;
  }
  return nullptr;
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
  if (config.diffusion.schedule == "linear" && config.diffusion.timesteps <= 20) {
    throw ConfigError(file + ": diffusion.timesteps " + std::to_string(config.diffusion.timesteps) +
                      " is too few for the linear schedule (β_T = 20/T must stay below 1): use more than 20 or "
                      "schedule: cosine");
  }
  if (config.train.batch_size % config.train.micro_batches != 0) {
    throw ConfigError(file + ": train.batch_size " + std::to_string(config.train.batch_size) +
                      " must be divisible by train.micro_batches " + std::to_string(config.train.micro_batches));
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

}  // namespace ddpm
