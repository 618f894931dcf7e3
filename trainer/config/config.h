// The run configuration: one YAML file per run, strict (unknown keys, wrong types and out-of-range values
// are errors naming the key path and file:line), overridable with `--set section.key=value`.
//
// Each key is declared once, as a row of the schema in config.cpp: its default, its type (read from the field
// below), its check and a help line. Loading, --set, printing, `ddpm config --keys`, the defaults of a Config and
// the shape signature all come from those rows; the fields below carry no defaults of their own. Enum-like keys
// are typed: their names are the lists beside each enum (choices.h, dataset_choices.h, ...).
#pragma once
#include <cstdint>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "data/dataset_choices.h"
#include "data/shard_sampler.h"
#include "distributed/comm_backend.h"
#include "trainer/diffusion/choices.h"
#include "trainer/model/precision.h"
#include "trainer/model/unet_options.h"

namespace ddpm {

class ConfigError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// run.device: auto is CUDA when present (GPU = local rank), else the CPU.
enum class DeviceChoice { kAuto, kCpu, kCuda };
inline constexpr std::pair<DeviceChoice, const char*> kDeviceChoiceNames[] = {
    {DeviceChoice::kAuto, "auto"}, {DeviceChoice::kCpu, "cpu"}, {DeviceChoice::kCuda, "cuda"}};

struct RunConfig {
  std::string dir;
  uint64_t seed = 0;
  DeviceChoice device = DeviceChoice::kAuto;
};

struct DataConfig {
  DataFormat format = DataFormat::kIdx;
  std::string path;
  DataSplit split = DataSplit::kTrain;
  int64_t image_size = 0;
  int64_t channels = 0;
  bool random_flip = false;
  ShardTail shard_tail = ShardTail::kDrop;
  int64_t loader_threads = 0;
  int64_t prefetch_batches = 0;
};

using ModelConfig = UNetArchitecture;

struct DiffusionConfig {
  int64_t timesteps = 0;
  BetaSchedule schedule = BetaSchedule::kLinear;
  ModelVariance model_variance = ModelVariance::kFixedLarge;
  Objective loss = Objective::kSimple;
};

struct TrainConfig {
  int64_t steps = 0;
  int64_t batch_size = 0;  // per rank
  int64_t micro_batches = 0;
  TimestepSamplerKind timestep_sampler = TimestepSamplerKind::kUniform;
  double lr = 0.0;
  double adam_beta2 = 0.0;
  int64_t warmup_steps = 0;
  double grad_clip = 0.0;
  std::vector<double> ema_rates;
  int64_t log_every = 0;
  int64_t checkpoint_every = 0;
  int64_t keep_checkpoints = 0;
  int64_t max_consecutive_skips = 0;
  Precision precision = Precision::kFp32;
  bool channels_last = false;
  bool fused_adam = false;
  bool cuda_graph = false;
  bool cudnn_benchmark = false;
  bool deterministic = false;
};

struct DistributedConfig {
  CommBackend backend = CommBackend::kAuto;
  double bucket_mb = 0.0;
  double first_bucket_mb = 0.0;
  int64_t replica_check_every = 0;
  double timeout_seconds = 0.0;
  bool always_reduce = false;
};

struct MonitoringConfig {
  bool enabled = false;
  std::string bind_address;
  int64_t base_port = 0;
  int64_t bound_ranges = 0;
  int64_t eval_every = 0;
  int64_t eval_images = 0;
};

struct Config {
  // Every key at its default: the values of configs/fashion_mnist.yaml (a test keeps the two equal).
  Config();

  std::string source = "<defaults>";  // the file it was loaded from, for messages
  RunConfig run;
  DataConfig data;
  ModelConfig model;
  DiffusionConfig diffusion;
  TrainConfig train;
  DistributedConfig distributed;
  MonitoringConfig monitoring;
};

// Loads `path`, applies each "section.key=value" override in order, validates. Throws ConfigError.
Config load_config(const std::string& path, const std::vector<std::string>& overrides = {});
// The same for YAML text already in memory; `source` stands for the file in messages and in Config::source.
Config parse_config(const std::string& text, const std::string& source, const std::vector<std::string>& overrides = {});
// Applies one "section.key=value" override (value parsed as YAML: 3, 0.1, true, [1, 2]). Throws ConfigError.
void apply_override(Config& config, const std::string& assignment);
// Cross-field checks (e.g. the image size against the U-Net's downsampling). Throws ConfigError.
void validate(const Config& config);
// The resolved configuration as YAML, in schema order (loading it gives the same Config).
std::string to_yaml(const Config& config);
// Every key path of the schema ("run.dir", ...), in order.
std::vector<std::string> config_keys();
// `ddpm config --keys`: every key with its type, default and help line, one per line, in schema order.
std::string describe_keys();
// What must match for two runs to share checkpoints (the rows marked as the model's or data's shape), as
// "key: value" lines.
std::string model_shape_signature(const Config& config);

// The names of an enum-like key's values, and the config's name of one value.
inline const auto& choices(DeviceChoice) { return kDeviceChoiceNames; }
inline const auto& choices(DataFormat) { return kDataFormatNames; }
inline const auto& choices(DataSplit) { return kDataSplitNames; }
inline const auto& choices(ShardTail) { return kShardTailNames; }
inline const auto& choices(BetaSchedule) { return kBetaScheduleNames; }
inline const auto& choices(ModelVariance) { return kModelVarianceNames; }
inline const auto& choices(Objective) { return kObjectiveNames; }
inline const auto& choices(TimestepSamplerKind) { return kTimestepSamplerNames; }
inline const auto& choices(Precision) { return kPrecisionNames; }
inline const auto& choices(CommBackend) { return kCommBackendNames; }
template <class E>
const char* choice_name(E value) {
  for (const auto& [choice, name] : choices(value)) {
    if (choice == value) return name;
  }
  return "?";
}

}  // namespace ddpm
