#include "trainer/interop/diffusers_layout.h"

#include <cmath>
#include <map>
#include <regex>
#include <stdexcept>

#include "trainer/config/builders.h"
#include "trainer/diffusion/schedule.h"

namespace ddpm {
namespace {

using json = nlohmann::json;

constexpr int64_t kGroups = 32;     // every GroupNorm of the U-Net (unet.cpp)
constexpr double kNormEps = 1e-6;   // and its eps

// Residual block and attention layers: ours → theirs.
const std::map<std::string, std::string>& resnet_layers() {
  static const std::map<std::string, std::string> names = {
      {"norm1", "norm1"}, {"conv1", "conv1"}, {"embedding_proj", "time_emb_proj"},
      {"norm2", "norm2"}, {"conv2", "conv2"}, {"skip", "conv_shortcut"}};
  return names;
}
const std::map<std::string, std::string>& attention_layers() {
  static const std::map<std::string, std::string> names = {
      {"norm", "group_norm"}, {"q", "to_q"}, {"k", "to_k"}, {"v", "to_v"}, {"proj_out", "to_out.0"}};
  return names;
}

// "layer.weight" inside a block → UNet2DModel's name for it under `prefix`.
DiffusersParameter block_parameter(const std::string& ours, const std::string& prefix, const std::string& rest,
                                   bool attention) {
  const size_t dot = rest.find('.');
  const std::map<std::string, std::string>& layers = attention ? attention_layers() : resnet_layers();
  const auto found = dot == std::string::npos ? layers.end() : layers.find(rest.substr(0, dot));
  if (found == layers.end()) throw std::invalid_argument("not a parameter of the U-Net: " + ours);
  const std::string tensor = rest.substr(dot + 1);
  const bool squeeze = attention && found->first != "norm" && tensor == "weight";
  return {ours, prefix + found->second + "." + tensor, squeeze};
}

// The block types of each level, down path first: attention where the level's side is an attention resolution.
std::vector<bool> attended_levels(const Config& config) {
  std::vector<bool> attended;
  for (size_t level = 0; level < config.model.channel_mult.size(); ++level) {
    attended.push_back(has_attention(config.model, config.data.image_size >> level));
  }
  return attended;
}

std::vector<int64_t> block_out_channels(const Config& config) {
  std::vector<int64_t> channels;
  for (const int64_t m : config.model.channel_mult) channels.push_back(config.model.channels * m);
  return channels;
}

// diffusers 0.41.0's UNet2DModel.__init__ defaults: what a config.json that leaves a key out means.
const json& unet_defaults() {
  static const json defaults = {
      {"sample_size", nullptr},
      {"in_channels", 3},
      {"out_channels", 3},
      {"center_input_sample", false},
      {"time_embedding_type", "positional"},
      {"time_embedding_dim", nullptr},
      {"freq_shift", 0},
      {"flip_sin_to_cos", true},
      {"down_block_types", {"DownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D"}},
      {"mid_block_type", "UNetMidBlock2D"},
      {"up_block_types", {"AttnUpBlock2D", "AttnUpBlock2D", "AttnUpBlock2D", "UpBlock2D"}},
      {"block_out_channels", {224, 448, 672, 896}},
      {"layers_per_block", 2},
      {"mid_block_scale_factor", 1},
      {"downsample_padding", 1},
      {"downsample_type", "conv"},
      {"upsample_type", "conv"},
      {"dropout", 0.0},
      {"act_fn", "silu"},
      {"attention_head_dim", 8},
      {"norm_num_groups", 32},
      {"attn_norm_num_groups", nullptr},
      {"norm_eps", 1e-5},
      {"resnet_time_scale_shift", "default"},
      {"add_attention", true},
      {"class_embed_type", nullptr},
      {"num_class_embeds", nullptr},
      {"num_train_timesteps", nullptr},
  };
  return defaults;
}

bool same_number(const json& a, const json& b) {
  return a.is_number() && b.is_number() && a.get<double>() == b.get<double>();
}

}  // namespace

DiffusersParameter diffusers_parameter(const std::string& ours, const UNetOptions& options) {
  const size_t dot = ours.find('.');
  if (dot == std::string::npos) throw std::invalid_argument("not a parameter of the U-Net: " + ours);
  const std::string module = ours.substr(0, dot), rest = ours.substr(dot + 1);
  const int64_t levels = static_cast<int64_t>(options.channel_mult.size());
  static const std::map<std::string, std::string> plain = {{"time_fc1", "time_embedding.linear_1"},
                                                           {"time_fc2", "time_embedding.linear_2"},
                                                           {"conv_in", "conv_in"},
                                                           {"norm_out", "conv_norm_out"},
                                                           {"conv_out", "conv_out"}};
  if (const auto found = plain.find(module); found != plain.end()) return {ours, found->second + "." + rest, false};
  if (module == "mid_res1") return block_parameter(ours, "mid_block.resnets.0.", rest, false);
  if (module == "mid_attn") return block_parameter(ours, "mid_block.attentions.0.", rest, true);
  if (module == "mid_res2") return block_parameter(ours, "mid_block.resnets.1.", rest, false);
  static const std::regex sampler("(down|up)sample_([0-9]+)");
  static const std::regex block("(down|up)_([0-9]+)_([0-9]+)_(res|attn)");
  std::smatch match;
  // The up path's levels run from the deepest: our level l is UNet2DModel's up block L − 1 − l.
  const auto up_index = [&](const std::string& level) { return std::to_string(levels - 1 - std::stoll(level)); };
  if (std::regex_match(module, match, sampler)) {
    const bool down = match[1] == "down";
    const std::string index = down ? match[2].str() : up_index(match[2].str());
    return {ours, std::string(down ? "down_blocks." : "up_blocks.") + index + (down ? ".downsamplers" : ".upsamplers") +
                      ".0.conv." + rest,
            false};
  }
  if (std::regex_match(module, match, block)) {
    const bool down = match[1] == "down", attention = match[4] == "attn";
    const std::string prefix = std::string(down ? "down_blocks." : "up_blocks.") +
                               (down ? match[2].str() : up_index(match[2].str())) +
                               (attention ? ".attentions." : ".resnets.") + match[3].str() + ".";
    return block_parameter(ours, prefix, rest, attention);
  }
  throw std::invalid_argument("not a parameter of the U-Net: " + ours);
}

std::string diffusers_unexpressible(const Config& config) {
  if (config.model.channel_mult.front() != 1) {
    return "model.channel_mult starts with " + std::to_string(config.model.channel_mult.front()) +
           ": UNet2DModel makes conv_in and the timestep embedding block_out_channels[0] wide, ddpm makes them "
           "model.channels wide (the two agree only for a first multiplier of 1)";
  }
  if (config.diffusion.model_variance == ModelVariance::kLearned) {
    return "diffusion.model_variance learned: ddpm reads the second half of the output as log σ², DDPMScheduler's "
           "'learned' as σ² itself (its learned_range matches ddpm's learned_range)";
  }
  return "";
}

json diffusers_unet_config(const Config& config) {
  const std::vector<bool> attended = attended_levels(config);
  json down = json::array(), up = json::array();
  for (const bool a : attended) down.push_back(a ? "AttnDownBlock2D" : "DownBlock2D");
  for (auto a = attended.rbegin(); a != attended.rend(); ++a) up.push_back(*a ? "AttnUpBlock2D" : "UpBlock2D");
  json out = unet_defaults();
  out["_class_name"] = "UNet2DModel";
  out["_diffusers_version"] = kDiffusersVersion;
  out["sample_size"] = config.data.image_size;
  out["in_channels"] = config.data.channels;
  out["out_channels"] = unet_options(config).out_channels;
  out["freq_shift"] = 1;             // exp(-log(10000) i / (half − 1)), as Ho et al.
  out["flip_sin_to_cos"] = false;    // [sin, cos]
  out["down_block_types"] = down;
  out["up_block_types"] = up;
  out["block_out_channels"] = block_out_channels(config);
  out["layers_per_block"] = config.model.num_res_blocks;
  out["downsample_padding"] = config.model.downsample_padding;
  out["dropout"] = config.model.dropout;
  out["attention_head_dim"] = nullptr;  // one head over all channels
  out["norm_num_groups"] = kGroups;
  out["norm_eps"] = kNormEps;
  return out;
}

json diffusers_scheduler_config(const Config& config) {
  const double scale = 1000.0 / static_cast<double>(config.diffusion.timesteps);
  const char* variance = config.diffusion.model_variance == ModelVariance::kFixedSmall   ? "fixed_small"
                         : config.diffusion.model_variance == ModelVariance::kLearnedRange ? "learned_range"
                                                                                            : "fixed_large";
  return {
      {"_class_name", "DDPMScheduler"},
      {"_diffusers_version", kDiffusersVersion},
      {"num_train_timesteps", config.diffusion.timesteps},
      // The linear schedule scaled to T (Ho et al.'s 1e-4 .. 0.02 at T = 1000); the cosine one ignores them.
      {"beta_start", config.diffusion.schedule == BetaSchedule::kLinear ? scale * 1e-4 : 1e-4},
      {"beta_end", config.diffusion.schedule == BetaSchedule::kLinear ? scale * 0.02 : 0.02},
      {"beta_schedule", config.diffusion.schedule == BetaSchedule::kLinear ? "linear" : "squaredcos_cap_v2"},
      {"trained_betas", nullptr},
      {"variance_type", variance},
      {"clip_sample", true},  // x̂_0 clipped to [-1, 1] in every step, as ddpm sample does by default
      {"clip_sample_range", 1.0},
      {"prediction_type", "epsilon"},
      {"thresholding", false},
      {"timestep_spacing", "leading"},
      {"steps_offset", 0},
  };
}

json diffusers_pipeline_index() {
  return {{"_class_name", "DDPMPipeline"},
          {"_diffusers_version", kDiffusersVersion},
          {"scheduler", {"diffusers", "DDPMScheduler"}},
          {"unet", {"diffusers", "UNet2DModel"}}};
}

void check_diffusers_unet_config(const json& theirs, const Config& config, const std::string& file) {
  if (!theirs.is_object()) throw std::runtime_error(file + ": not a JSON object");
  if (theirs.contains("_class_name") && theirs["_class_name"] != "UNet2DModel") {
    throw std::runtime_error(file + ": a config of another architecture (_class_name " + theirs["_class_name"].dump() +
                             "); ddpm imports UNet2DModel");
  }
  const json& defaults = unet_defaults();
  for (const auto& [key, value] : theirs.items()) {
    if (!key.empty() && key[0] == '_') continue;  // diffusers' bookkeeping (_diffusers_version, _name_or_path)
    if (!defaults.contains(key)) {
      throw std::runtime_error(file + ": key '" + key + "' is not one of UNet2DModel's (diffusers " + kDiffusersVersion +
                               "): a model ddpm's import does not know");
    }
  }
  const json expected = diffusers_unet_config(config);
  // Spellings diffusers reads as the same: "swish" is its SiLU, "UNetRes" before a block type is dropped
  // (get_down_block, get_up_block).
  const auto value_of = [&](const std::string& key) {
    json value = theirs.contains(key) ? theirs.at(key) : defaults.at(key);
    if (key == "act_fn" && value == "swish") value = "silu";
    if ((key == "down_block_types" || key == "up_block_types") && value.is_array()) {
      for (json& type : value) {
        if (type.is_string() && type.get<std::string>().rfind("UNetRes", 0) == 0) type = type.get<std::string>().substr(7);
      }
    }
    return value;
  };
  // Which of our keys decides each of theirs that a config can change; the others have one value in ddpm's U-Net.
  static const std::map<std::string, std::string> decided_by = {
      {"sample_size", "data.image_size"},
      {"in_channels", "data.channels"},
      {"out_channels", "data.channels, twice that with diffusion.model_variance learned_range"},
      {"block_out_channels", "model.channels × model.channel_mult"},
      {"layers_per_block", "model.num_res_blocks"},
      {"down_block_types", "model.attention_resolutions at data.image_size"},
      {"up_block_types", "model.attention_resolutions at data.image_size"},
      {"downsample_padding", "model.downsample_padding"}};
  const auto fail = [&](const std::string& key, const json& value, const std::string& wanted) {
    const auto by = decided_by.find(key);
    throw std::runtime_error(file + ": " + key + " is " + value.dump() + ", but " +
                             (by != decided_by.end() ? "the config " + config.source + " gives " + wanted + " (" +
                                                           by->second + ")"
                                                     : "ddpm's U-Net (the DDPM architecture) has " + wanted + " only"));
  };
  const std::vector<int64_t> widths = block_out_channels(config);
  for (const auto& [key, wanted] : expected.items()) {
    if (key[0] == '_' || key == "dropout" || key == "num_train_timesteps") continue;  // no part of the function
    const json value = value_of(key);
    if (key == "sample_size") {
      // Metadata for pipelines (the image size to sample), an int or [height, width].
      const bool square = value.is_array() && value.size() == 2 && value[0] == value[1];
      if (value.is_null() || value == wanted || (square && value[0] == wanted)) continue;
    } else if (key == "time_embedding_dim") {
      if (value.is_null() || same_number(value, json(4 * config.model.channels))) continue;
      fail(key, value, "null (4 × block_out_channels[0] = " + std::to_string(4 * config.model.channels) + ")");
    } else if (key == "attention_head_dim") {
      // One head: null, or a head as wide as every attention block (the middle block's is the last level's width).
      bool one_head = value.is_null();
      if (value.is_number_integer()) {
        one_head = value.get<int64_t>() == widths.back();
        const std::vector<bool> attended = attended_levels(config);
        for (size_t level = 0; level < attended.size(); ++level) one_head &= !attended[level] || value == widths[level];
      }
      if (one_head) continue;
      fail(key, value, "null (one head over all channels)");
    } else if (key == "attn_norm_num_groups") {
      if (value.is_null() || same_number(value, json(kGroups))) continue;
      fail(key, value, "null or 32");
    } else if (value == wanted || same_number(value, wanted)) {
      continue;
    }
    fail(key, value, wanted.dump());
  }
}

std::vector<std::string> check_diffusers_scheduler_config(const json& theirs, const Config& config,
                                                          const std::string& file) {
  if (!theirs.is_object()) throw std::runtime_error(file + ": not a JSON object");
  const auto get = [&](const std::string& key, const json& otherwise) {
    return theirs.contains(key) && !theirs.at(key).is_null() ? theirs.at(key) : otherwise;
  };
  const auto fail = [&](const std::string& what) { throw std::runtime_error(file + ": " + what); };
  // A value of the type the key needs, or an error naming the key.
  const auto text = [&](const std::string& key, const char* otherwise) {
    const json value = get(key, otherwise);
    if (!value.is_string()) fail(key + " is " + value.dump() + ", expected a string");
    return value.get<std::string>();
  };
  const auto flag = [&](const std::string& key, bool otherwise) {
    const json value = get(key, otherwise);
    if (!value.is_boolean()) fail(key + " is " + value.dump() + ", expected true or false");
    return value.get<bool>();
  };
  std::vector<std::string> warnings;
  const std::string kind = text("_class_name", "DDPMScheduler");
  if (kind != "DDPMScheduler" && kind != "DDIMScheduler") {
    warnings.push_back(file + ": a " + kind + "; its num_train_timesteps and β are checked as DDPMScheduler's");
  }
  const json steps = get("num_train_timesteps", 1000);
  if (!same_number(steps, json(config.diffusion.timesteps))) {
    fail("num_train_timesteps is " + steps.dump() + ", but the config " + config.source + " has diffusion.timesteps " +
         std::to_string(config.diffusion.timesteps) + ": the model was trained for another process");
  }
  const std::vector<double> betas = make_beta_schedule(config.diffusion.schedule, config.diffusion.timesteps);
  const json trained = get("trained_betas", nullptr);
  const auto near = [](double a, double b, double tolerance) { return std::abs(a - b) <= tolerance * std::abs(b); };
  if (!trained.is_null()) {
    if (!trained.is_array() || trained.size() != betas.size()) fail("trained_betas does not hold T = " + std::to_string(betas.size()) + " numbers");
    for (size_t i = 0; i < betas.size(); ++i) {
      if (!trained[i].is_number() || !near(trained[i].get<double>(), betas[i], 1e-6)) {
        fail("trained_betas[" + std::to_string(i) + "] is " + trained[i].dump() + ", diffusion.schedule " +
             choice_name(config.diffusion.schedule) + " has " + std::to_string(betas[i]));
      }
    }
  } else {
    const std::string schedule = text("beta_schedule", "linear");
    const std::string ours = config.diffusion.schedule == BetaSchedule::kLinear ? "linear" : "squaredcos_cap_v2";
    if (schedule != ours) {
      fail("beta_schedule is '" + schedule + "', but the config's diffusion.schedule " +
           choice_name(config.diffusion.schedule) + " is DDPMScheduler's '" + ours + "'");
    }
    if (schedule == "linear") {
      for (const auto& [key, index] : {std::pair<const char*, size_t>{"beta_start", 0}, {"beta_end", betas.size() - 1}}) {
        const json value = get(key, key == std::string("beta_start") ? 1e-4 : 0.02);
        if (!value.is_number() || !near(value.get<double>(), betas[index], 1e-9)) {
          fail(std::string(key) + " is " + value.dump() + ", but the linear schedule of diffusion.timesteps " +
               std::to_string(config.diffusion.timesteps) + " has " + std::to_string(betas[index]) +
               " (1e-4 and 0.02 scaled by 1000 / T)");
        }
      }
    }
  }
  // Rescaled to a zero terminal SNR (Lin et al. 2024), the β are not the schedule's any more.
  if (flag("rescale_betas_zero_snr", false)) {
    fail("rescale_betas_zero_snr is true: the model was trained with β rescaled to a zero terminal SNR, which no "
         "diffusion.schedule of ddpm is");
  }
  const std::string prediction = text("prediction_type", "epsilon");
  if (prediction != "epsilon") fail("prediction_type is '" + prediction + "': ddpm's U-Net predicts ε ('epsilon') only");

  const std::string variance = text("variance_type", "fixed_small");
  const bool learned_range = config.diffusion.model_variance == ModelVariance::kLearnedRange;
  if (variance == "learned" || (variance == "learned_range") != learned_range) {
    fail("variance_type is '" + variance + "', the config's diffusion.model_variance is " +
         choice_name(config.diffusion.model_variance) + " (learned_range is the one learned kind the two share)");
  }
  const std::string ours = choice_name(config.diffusion.model_variance);
  if (!learned_range && variance.rfind(ours, 0) != 0) {
    warnings.push_back(file + ": variance_type is '" + variance + "', the config samples with diffusion.model_variance " +
                       ours + " (the weights do not depend on it)");
  }
  if (!flag("clip_sample", true)) {
    warnings.push_back(file + ": clip_sample is false; ddpm sample clips x̂_0 to [-1, 1] unless given --no-clip");
  }
  const json range = get("clip_sample_range", 1.0);
  if (!same_number(range, json(1.0))) {
    warnings.push_back(file + ": clip_sample_range is " + range.dump() + "; ddpm sample clips x̂_0 to [-1, 1]");
  }
  if (flag("thresholding", false)) {
    warnings.push_back(file + ": thresholding is true (dynamic thresholding of x̂_0); ddpm sample clips to [-1, 1]");
  }
  return warnings;
}

}  // namespace ddpm
