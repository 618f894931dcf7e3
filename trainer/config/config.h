// The run configuration: one YAML file per run, strict (unknown keys, wrong types and out-of-range values
// are errors naming the key path and file:line), overridable with `--set section.key=value`.
#pragma once
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace ddpm {

class ConfigError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct RunConfig {
  std::string dir = "runs/fashion_mnist";
  uint64_t seed = 0;
  std::string device = "auto";  // auto (CUDA when present, GPU = local rank) | cpu | cuda
};

struct DataConfig {
  std::string format = "idx";  // idx | cifar10 | folder
  std::string path = "/usr/share/datasets/fashion-mnist";
  std::string split = "train";  // train | test (idx, cifar10); ignored for folder
  int64_t image_size = 28;
  int64_t channels = 1;
  bool random_flip = false;
  std::string shard_tail = "drop";  // drop | wrap: how unequal shards are made equal across ranks
  int64_t loader_threads = 1;
  int64_t prefetch_batches = 4;
};

struct ModelConfig {
  int64_t channels = 32;
  std::vector<int64_t> channel_mult = {1, 2, 2};
  int64_t num_res_blocks = 1;
  std::vector<int64_t> attention_resolutions = {7};
  double dropout = 0.1;
};

struct DiffusionConfig {
  int64_t timesteps = 1000;
  std::string schedule = "linear";            // linear | cosine
  std::string model_variance = "fixed_large";  // fixed_large | fixed_small
  std::string loss = "simple";                 // simple (ε-MSE) | kl (the true bound terms)
};

struct DistributedConfig {
  std::string backend = "auto";        // auto (NCCL for CUDA, MPI for CPU) | mpi | nccl
  double bucket_mb = 25.0;             // gradient bucket size (PyTorch DDP's default)
  double first_bucket_mb = 1.0;        // a small first bucket starts communication early in backward
  int64_t replica_check_every = 500;   // steps between parameter checksums across ranks (0: never)
  double timeout_seconds = 60.0;       // a collective that takes longer means a dead or hung rank: abort the job
  bool always_reduce = false;          // all-reduce gradients at world size 1 too (measures and tests that path)
};

struct TrainConfig {
  int64_t steps = 1500;
  int64_t batch_size = 32;  // per rank
  int64_t micro_batches = 1;  // gradient accumulation: batch_size is split into this many, synced on the last
  double lr = 1e-3;
  int64_t warmup_steps = 100;
  double grad_clip = 1.0;
  std::vector<double> ema_rates = {0.995};
  int64_t log_every = 50;
  int64_t checkpoint_every = 500;
  int64_t keep_checkpoints = 3;
  int64_t max_consecutive_skips = 10;  // steps in a row with a non-finite loss or gradient before the run stops
  std::string precision = "fp32";      // fp32 | bf16 (autocast; float32 master weights and optimizer state)
  bool channels_last = false;          // NHWC activations and weights (faster convolutions on tensor cores)
  bool fused_adam = true;              // one fused multi-tensor Adam kernel instead of a loop over parameters
  bool cuda_graph = false;             // capture the whole step in a CUDA graph, replay it (one GPU, one rank)
};

// Keys a config file leaves out take these values, which are those of configs/fashion_mnist.yaml (a test
// keeps the two equal).
struct MonitoringConfig {
  bool enabled = true;
  std::string bind_address = "127.0.0.1";  // loopback unless you name an address Prometheus can reach
  int64_t base_port = 9400;                // rank with local rank r serves on base_port + r (0: any free port)
  int64_t bound_ranges = 4;                // the L_{t-1} terms are exported summed over this many t ranges
  int64_t eval_every = 500;                // steps between full-bound evaluations of the EMA model (0: never)
  int64_t eval_images = 4;                 // size of the fixed held-out batch (first images of the test split)
};

struct Config {
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

}  // namespace ddpm
