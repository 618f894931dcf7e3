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

// Shortest text that reads back as the same double, in positional notation where that stays short (0.0002, not
// 0.00020000000000000001 or 2e-04; 60, not 6e+01).
std::string format_double(double value) {
  char buffer[64];
  for (int precision = 1; precision <= 17; ++precision) {
    std::snprintf(buffer, sizeof(buffer), "%.*g", precision, value);
    if (std::strtod(buffer, nullptr) == value) break;
  }
  std::string text(buffer);
  if (text.find('e') == std::string::npos) return text;
  for (int decimals = 0; decimals <= 12; ++decimals) {
    std::snprintf(buffer, sizeof(buffer), "%.*f", decimals, value);
    if (std::strtod(buffer, nullptr) == value) return buffer;
  }
  return text;  // too small or too large for positional notation to stay short
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

// ---- What each type of key is: its name in messages, how it is read, how it is written -------------------------
template <class T>
inline constexpr bool kIsList = std::is_same_v<T, std::vector<int64_t>> || std::is_same_v<T, std::vector<double>>;

template <class T>
std::string type_name() {
  if constexpr (std::is_same_v<T, bool>) return "true or false";
  if constexpr (std::is_same_v<T, int64_t>) return "an integer";
  if constexpr (std::is_same_v<T, uint64_t>) return "a non-negative integer";
  if constexpr (std::is_same_v<T, double>) return "a number";
  if constexpr (std::is_same_v<T, std::string> || std::is_enum_v<T>) return "a string";
  if constexpr (std::is_same_v<T, std::vector<int64_t>>) return "a list of integers";
  if constexpr (std::is_same_v<T, std::vector<double>>) return "a list of numbers";
}

template <class T>
std::vector<std::string> choice_list() {
  std::vector<std::string> names;
  if constexpr (std::is_enum_v<T>) {
    for (const auto& entry : choices(T{})) names.emplace_back(entry.second);
  }
  return names;
}

template <class T>
T scalar_as(const YAML::Node& node) {
  if (!node.IsScalar()) throw YAML::BadConversion(node.Mark());
  return node.as<T>();
}

// Throws YAML::BadConversion for a value of another type, std::invalid_argument for a bad one of the right type.
template <class T>
T read_value(const YAML::Node& node) {
  if constexpr (kIsList<T>) {
    if (!node.IsSequence()) throw YAML::BadConversion(node.Mark());
    T value;
    for (const YAML::Node& item : node) {
      try {
        value.push_back(scalar_as<typename T::value_type>(item));
      } catch (const YAML::BadConversion&) {
        const std::string shown = item.IsScalar() ? "'" + item.Scalar() + "'" : item.IsNull() ? "empty" : "not a single value";
        throw std::invalid_argument("entry " + std::to_string(value.size() + 1) + " of the list is " + shown +
                                    ", not a number" + (std::is_same_v<T, std::vector<int64_t>> ? " (an integer)" : ""));
      }
    }
    return value;
  } else if constexpr (std::is_enum_v<T>) {
    const std::string name = scalar_as<std::string>(node);
    for (const auto& [choice, text] : choices(T{})) {
      if (name == text) return choice;
    }
    const std::vector<std::string> names = choice_list<T>();
    std::string list;
    for (const std::string& n : names) list += (list.empty() ? "" : ", ") + n;
    throw std::invalid_argument("must be one of " + list + ", got '" + name + "'" + did_you_mean(name, names));
  } else {
    const T value = scalar_as<T>(node);
    if constexpr (std::is_same_v<T, std::string>) reject_control_characters(value);
    return value;
  }
}

// The value as YAML flow text: 0.001, [1, 2, 2], linear, true.
template <class T>
std::string value_text(const T& value) {
  if constexpr (kIsList<T>) {
    std::string text = "[";
    for (size_t i = 0; i < value.size(); ++i) text += (i ? ", " : "") + value_text(value[i]);
    return text + "]";
  } else if constexpr (std::is_enum_v<T>) {
    return choice_name(value);
  } else if constexpr (std::is_same_v<T, bool>) {
    return value ? "true" : "false";
  } else if constexpr (std::is_same_v<T, double>) {
    return format_double(value);
  } else if constexpr (std::is_same_v<T, std::string>) {
    return value;
  } else {
    return std::to_string(value);
  }
}

template <class T>
void emit_value(YAML::Emitter& out, const T& value) {
  if constexpr (kIsList<T>) {
    out << YAML::Flow << YAML::BeginSeq;
    for (const auto& item : value) emit_value(out, item);
    out << YAML::EndSeq;
  } else if constexpr (std::is_same_v<T, double> || std::is_enum_v<T>) {
    out << value_text(value);
  } else {
    out << value;
  }
}

// ---- Checks: each throws std::invalid_argument with the reason -------------------------------------------------
template <class T>
using Check = std::function<void(const T&)>;

Check<int64_t> at_least(int64_t minimum) {
  return [minimum](const int64_t& v) {
    if (v < minimum) throw std::invalid_argument("must be at least " + std::to_string(minimum) + ", got " + std::to_string(v));
  };
}

Check<int64_t> between(int64_t lo, int64_t hi) {
  return [lo, hi](const int64_t& v) {
    if (v < lo || v > hi) {
      throw std::invalid_argument("must be in [" + std::to_string(lo) + ", " + std::to_string(hi) + "], got " + std::to_string(v));
    }
  };
}

Check<double> in_range(double lo, double hi, bool lo_open = false) {
  return [lo, hi, lo_open](const double& v) {
    const bool ok = (lo_open ? v > lo : v >= lo) && v <= hi;
    if (!ok) {
      std::ostringstream message;
      message << "must be in " << (lo_open ? "(" : "[") << lo << ", " << hi << "], got " << v;
      throw std::invalid_argument(message.str());
    }
  };
}

Check<std::vector<int64_t>> positive_list(bool allow_empty) {
  return [allow_empty](const std::vector<int64_t>& v) {
    if (v.empty() && !allow_empty) throw std::invalid_argument("must not be empty");
    for (int64_t x : v) {
      if (x < 1) throw std::invalid_argument("entries must be at least 1, got " + std::to_string(x));
    }
  };
}

Check<std::string> not_empty() {
  return [](const std::string& v) {
    if (v.empty()) throw std::invalid_argument("must not be empty");
  };
}

// ---- A key of the schema ---------------------------------------------------------------------------------------
enum class Part { kRun, kShape };  // kShape: part of what must match to resume (model_shape_signature)

struct Field {
  std::string section;
  std::string key;
  std::string expected;              // the type, for messages: "an integer", "a list of numbers", ...
  std::vector<std::string> choices;  // an enum-like key's names
  std::string default_text;
  std::string help;
  Part part = Part::kRun;
  std::function<void(Config&, const YAML::Node&)> read;  // throws YAML::BadConversion / std::invalid_argument
  std::function<void(const Config&, YAML::Emitter&)> write;
  std::function<std::string(const Config&)> text;
  std::function<void(Config&)> reset;  // to the default
  std::string path() const { return section + "." + key; }
};

// One row: where the value lives (the macro names the section and key after the field, so the two cannot drift),
// its default, its check, and a help line. The type comes from the field.
template <class T>
struct Given {  // keeps T out of deduction: the field's type decides, and the default and check convert to it
  using type = T;
};

template <class Access, class T = std::remove_reference_t<std::invoke_result_t<Access, Config&>>>
Field row(const char* section, const char* key, Access access, typename Given<T>::type default_value,
          typename Given<Check<T>>::type check, std::string help, Part part = Part::kRun) {
  Field field;
  field.section = section;
  field.key = key;
  field.expected = type_name<T>();
  field.choices = choice_list<T>();
  field.default_text = value_text(default_value);
  field.help = std::move(help);
  field.part = part;
  field.read = [access, check](Config& config, const YAML::Node& node) {
    const T value = read_value<T>(node);
    if (check) check(value);
    access(config) = value;
  };
  field.write = [access](const Config& config, YAML::Emitter& out) { emit_value(out, access(const_cast<Config&>(config))); };
  field.text = [access](const Config& config) { return value_text(access(const_cast<Config&>(config))); };
  field.reset = [access, default_value](Config& config) { access(config) = default_value; };
  return field;
}
#define DDPM_KEY(section, key) #section, #key, [](Config& c) -> auto& { return c.section.key; }

const std::vector<Field>& schema() {
  using VI = std::vector<int64_t>;
  using VD = std::vector<double>;
  static const std::vector<Field> fields = {
      row(DDPM_KEY(run, dir), std::string("runs/fashion_mnist"), not_empty(),
          "run directory: checkpoints, config.yaml, train_log.jsonl; a run resumes from it"),
      row(DDPM_KEY(run, seed), uint64_t{0}, {}, "seed of the weights, the data order and every draw"),
      row(DDPM_KEY(run, device), DeviceChoice::kAuto, {}, "auto: CUDA when present (GPU = local rank), else the CPU"),
      row(DDPM_KEY(data, format), DataFormat::kIdx, {}, "idx (Fashion-MNIST), cifar10 (binary batches), folder (images)"),
      row(DDPM_KEY(data, path), std::string("/usr/share/datasets/fashion-mnist"), not_empty(),
          "folder holding the data set's files (every node needs it)"),
      row(DDPM_KEY(data, split), DataSplit::kTrain, {}, "which split trains (idx, cifar10; a folder has one)"),
      row(DDPM_KEY(data, image_size), int64_t{28}, at_least(1), "side of the square images, in pixels", Part::kShape),
      row(DDPM_KEY(data, channels), int64_t{1},
          Check<int64_t>([](const int64_t& v) {
            if (v != 1 && v != 3) throw std::invalid_argument("must be 1 or 3, got " + std::to_string(v));
          }),
          "1 (grayscale) or 3 (RGB)", Part::kShape),
      row(DDPM_KEY(data, random_flip), false, {}, "random horizontal flips (the paper's CIFAR-10 augmentation)"),
      row(DDPM_KEY(data, shard_tail), ShardTail::kDrop, {}, "how unequal shards are made equal across ranks"),
      row(DDPM_KEY(data, loader_threads), int64_t{1}, at_least(1), "threads collating batches in the background"),
      row(DDPM_KEY(data, prefetch_batches), int64_t{4}, at_least(1), "batches prepared ahead (bounds the memory)"),
      row(DDPM_KEY(model, channels), int64_t{32}, at_least(1), "base width of the U-Net (a multiple of 32)", Part::kShape),
      row(DDPM_KEY(model, channel_mult), VI{1, 2, 2}, positive_list(false), "width multiplier of each resolution level",
          Part::kShape),
      row(DDPM_KEY(model, num_res_blocks), int64_t{1}, at_least(1), "residual blocks per level", Part::kShape),
      row(DDPM_KEY(model, attention_resolutions), VI{7}, positive_list(true), "resolutions with self-attention",
          Part::kShape),
      row(DDPM_KEY(model, dropout), 0.1, in_range(0.0, 0.99), "dropout in the residual blocks"),
      row(DDPM_KEY(diffusion, timesteps), int64_t{1000}, at_least(2), "T, the number of diffusion steps", Part::kShape),
      row(DDPM_KEY(diffusion, schedule), BetaSchedule::kLinear, {}, "the β schedule"),
      row(DDPM_KEY(diffusion, model_variance), ModelVariance::kFixedLarge, {}, "σ_t² = β_t (large) or β̃_t (small)"),
      row(DDPM_KEY(diffusion, loss), Objective::kSimple, {}, "simple: the ε-MSE (eq. 14); kl: the true bound terms"),
      row(DDPM_KEY(train, steps), int64_t{1500}, at_least(1), "the run's target, in optimizer steps"),
      row(DDPM_KEY(train, batch_size), int64_t{32}, at_least(1), "images per step on each rank"),
      row(DDPM_KEY(train, micro_batches), int64_t{1}, at_least(1),
          "gradient accumulation: batch_size split into this many, synchronized on the last"),
      row(DDPM_KEY(train, lr), 1e-3, in_range(0.0, 1.0, true), "Adam's learning rate after warmup"),
      row(DDPM_KEY(train, adam_beta2), 0.999, in_range(0.0, 1.0, true),
          "Adam's decay of the squared-gradient average (0.99 forgets faster, for short runs)"),
      row(DDPM_KEY(train, warmup_steps), int64_t{100}, at_least(0), "steps of linear learning-rate warmup"),
      row(DDPM_KEY(train, grad_clip), 1.0,
          Check<double>([](const double& v) {
            if (!(v >= 0.0)) throw std::invalid_argument("must be >= 0 (0 turns clipping off)");
          }),
          "global gradient-norm clip (0: off)"),
      row(DDPM_KEY(train, ema_rates), VD{0.995},
          Check<VD>([](const VD& v) {
            for (double r : v) in_range(0.0, 1.0, true)(r);
          }),
          "EMA decay rates; sampling and evaluation use the first", Part::kShape),
      row(DDPM_KEY(train, log_every), int64_t{50}, at_least(1), "steps between progress lines, log lines and metrics"),
      row(DDPM_KEY(train, checkpoint_every), int64_t{500}, at_least(1), "steps between checkpoints (and one at the end)"),
      row(DDPM_KEY(train, keep_checkpoints), int64_t{3}, at_least(1), "newest checkpoints kept in run.dir"),
      row(DDPM_KEY(train, max_consecutive_skips), int64_t{10}, at_least(1),
          "steps in a row with a non-finite loss or gradient before the run stops"),
      row(DDPM_KEY(train, precision), Precision::kFp32, {}, "bf16: autocast around the model, float32 master weights"),
      row(DDPM_KEY(train, channels_last), false, {}, "NHWC weights and activations (tensor cores on GPUs)"),
      row(DDPM_KEY(train, fused_adam), true, {}, "Adam as one fused multi-tensor kernel"),
      row(DDPM_KEY(train, cuda_graph), false, {}, "capture the whole step in a CUDA graph (one GPU, one rank)"),
      row(DDPM_KEY(distributed, backend), CommBackend::kAuto, {}, "auto: NCCL for CUDA tensors, MPI for CPU ones"),
      row(DDPM_KEY(distributed, bucket_mb), 25.0, in_range(0.0, 4096.0, true), "gradient bucket size, MiB"),
      row(DDPM_KEY(distributed, first_bucket_mb), 1.0, in_range(0.0, 4096.0, true),
          "size of the first bucket, MiB (starts communication early in backward)"),
      row(DDPM_KEY(distributed, replica_check_every), int64_t{500}, at_least(0),
          "steps between parameter checksums across ranks (0: never)"),
      row(DDPM_KEY(distributed, timeout_seconds), 60.0, in_range(1.0, 86400.0),
          "a wait on other ranks longer than this aborts the job, naming the culprit"),
      row(DDPM_KEY(distributed, always_reduce), false, {}, "all-reduce gradients at world size 1 too (measures the path)"),
      row(DDPM_KEY(monitoring, enabled), true, {}, "serve Prometheus metrics on every rank"),
      row(DDPM_KEY(monitoring, bind_address), std::string("127.0.0.1"), not_empty(),
          "address the metrics are served on (loopback unless Prometheus is elsewhere)"),
      row(DDPM_KEY(monitoring, base_port), int64_t{9400}, between(0, 65535),
          "local rank r serves on base_port + r (0: any free port)"),
      row(DDPM_KEY(monitoring, bound_ranges), int64_t{4}, at_least(1), "L_{t-1} exported summed over this many t ranges"),
      row(DDPM_KEY(monitoring, eval_every), int64_t{500}, at_least(0),
          "steps between full-bound evaluations of the EMA model (0: never)"),
      row(DDPM_KEY(monitoring, eval_images), int64_t{4}, at_least(1), "size of the fixed held-out batch"),
  };
  return fields;
}
#undef DDPM_KEY

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
    if (f.part == Part::kShape) signature += f.path() + ": " + f.text(config) + "\n";
  }
  return signature;
}

}  // namespace ddpm
