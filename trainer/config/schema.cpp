// The schema: one row per config key, in file order. A row is where the value lives, its default, its check and a
// help line; its type is the field's. Adding a key is one row here plus the code that uses it (and the key in the
// shipped configs, which a test keeps complete).
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <limits>

#include "trainer/config/key_types.h"

namespace ddpm::config_detail {
namespace {

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


}  // namespace

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

Check<double> in_range(double lo, double hi, bool lo_open) {
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
  field.signature = [access](const Config& config) { return signature_text(access(const_cast<Config&>(config))); };
  field.reset = [access, default_value](Config& config) { access(config) = default_value; };
  return field;
}
// A row whose line in the shape signature is `signature` (no line where it returns ""), for a key only some of whose
// values change the model.
Field with_signature(Field field, std::function<std::string(const Config&)> signature) {
  field.signature = std::move(signature);
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
      // Only 0 (Ho et al.'s padding) enters the signature: checkpoints of earlier builds, which padded 1, load as written.
      with_signature(row(DDPM_KEY(model, downsample_padding), int64_t{1}, between(0, 1),
                         "the stride-2 downsampling conv's padding: 1 on every side (improved-diffusion), or 0: none "
                         "before, one after (Ho et al.'s TF 'SAME'; diffusers' downsample_padding 0)",
                         Part::kShape),
                     [](const Config& c) {
                       return c.model.downsample_padding == 1 ? std::string() : std::to_string(c.model.downsample_padding);
                     }),
      row(DDPM_KEY(model, dropout), 0.1, in_range(0.0, 0.99), "dropout in the residual blocks"),
      row(DDPM_KEY(diffusion, timesteps), int64_t{1000}, at_least(2), "T, the number of diffusion steps", Part::kShape),
      row(DDPM_KEY(diffusion, schedule), BetaSchedule::kLinear, {}, "the β schedule"),
      // Only a learned variance changes the network (2C output channels), so only it enters the signature: the
      // checkpoints of fixed-variance runs (of every earlier build too) load under either fixed kind.
      with_signature(row(DDPM_KEY(diffusion, model_variance), ModelVariance::kFixedLarge, {},
                         "σ_t²: β_t (fixed_large), β̃_t (fixed_small), or predicted: log σ² = v (learned), between the "
                         "two (learned_range); a learned kind must match to resume",
                         Part::kShape),
                     [](const Config& c) {
                       return learns_variance(c.diffusion.model_variance) ? std::string(choice_name(c.diffusion.model_variance))
                                                                          : std::string();
                     }),
      row(DDPM_KEY(diffusion, loss), Objective::kSimple, {},
          "simple: the ε-MSE (eq. 14); kl: the bound terms; rescaled_kl: them ×T; hybrid: simple + 0.001·L_vlb "
          "(learned variances)"),
      row(DDPM_KEY(train, steps), int64_t{1500}, at_least(1), "the run's target, in optimizer steps"),
      row(DDPM_KEY(train, batch_size), int64_t{32}, at_least(1), "images per step on each rank"),
      row(DDPM_KEY(train, micro_batches), int64_t{1}, at_least(1),
          "gradient accumulation: batch_size split into this many, synchronized on the last"),
      row(DDPM_KEY(train, timestep_sampler), TimestepSamplerKind::kUniform, {},
          "how t is drawn: uniform, or loss_second_moment (p_t ∝ √E[L_t²] of the last 10 losses per t)"),
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
      row(DDPM_KEY(train, cudnn_benchmark), false, {},
          "cuDNN times its algorithms for each new shape and keeps the fastest (GPUs)"),
      row(DDPM_KEY(train, deterministic), false, {},
          "deterministic GPU kernels (cuDNN's, cuBLAS's fixed workspace, PyTorch's): bit-identical CUDA runs, slower"),
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
          "IPv4 address the metrics are served on, 0.0.0.0, or a subnet (10.0.0.0/8: this host's address in it)"),
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

}  // namespace ddpm::config_detail
