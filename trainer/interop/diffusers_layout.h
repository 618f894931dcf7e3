// How ddpm's U-Net is diffusers' UNet2DModel (and its process a DDPMScheduler): the parameter names of one in the
// other's terms, and the config.json files that describe ours to diffusers. The two networks are the same function
// of the same weights where the layout can express the config (diffusers_unexpressible says where it cannot):
// diffusers builds the DDPM U-Net with flip_sin_to_cos false, freq_shift 1, one attention head, GroupNorm(32) with
// eps 1e-6, and our downsampling padding.
#pragma once
#include <nlohmann/json.hpp>

#include <string>
#include <vector>

#include "trainer/config/config.h"
#include "trainer/model/unet_options.h"

namespace ddpm {

// The diffusers release whose layout this follows (written into the exported config files).
inline constexpr const char* kDiffusersVersion = "0.41.0";

// One parameter of ours and its name in UNet2DModel's state dict. Attention's q, k, v and output projections are
// 1x1 convolutions here, [C, C, 1, 1], and Linear layers there, [C, C]: `squeeze_1x1` marks them.
struct DiffusersParameter {
  std::string ours;
  std::string theirs;
  bool squeeze_1x1 = false;
};

// UNet2DModel's name for one of our parameter names ("down_0_1_res.conv1.weight" → "down_blocks.0.resnets.1.conv1.weight").
// Throws std::invalid_argument for a name that is not one of the U-Net's.
DiffusersParameter diffusers_parameter(const std::string& ours, const UNetOptions& options);

// "" when UNet2DModel (with DDPMScheduler) can be this config's model, else why not.
std::string diffusers_unexpressible(const Config& config);

// The UNet2DModel config.json (every key of diffusers 0.41.0's UNet2DModel) of the config's U-Net.
nlohmann::json diffusers_unet_config(const Config& config);
// The DDPMScheduler scheduler_config.json of the config's process: T, the β schedule, the variance, clipping.
nlohmann::json diffusers_scheduler_config(const Config& config);
// model_index.json of a DDPMPipeline of the two.
nlohmann::json diffusers_pipeline_index();

// Checks a UNet2DModel config.json (`file` names it) against the config's U-Net: every key that changes the function,
// missing keys taking diffusers' defaults. Throws std::runtime_error naming the file, the first key that differs, both
// values and the config keys that decide it.
void check_diffusers_unet_config(const nlohmann::json& theirs, const Config& config, const std::string& file);
// Checks a DDPMScheduler scheduler_config.json against the config's diffusion (T, the β schedule, ε prediction).
// Throws as check_diffusers_unet_config; returns warnings for what only changes sampling (the variance kind, clipping).
std::vector<std::string> check_diffusers_scheduler_config(const nlohmann::json& theirs, const Config& config,
                                                          const std::string& file);

}  // namespace ddpm
