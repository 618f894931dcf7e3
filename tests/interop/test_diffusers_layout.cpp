// ddpm's U-Net in diffusers' terms: every parameter's UNet2DModel name and shape against the state dicts diffusers
// itself builds (golden/*_keys.txt, written by diffusers 0.41.0), the config.json checks and every refusal, and the
// export → import round trip on a checkpoint, bit for bit, leaving nothing behind when refused.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <string>

#include "trainer/checkpoint/checkpoint.h"
#include "trainer/checkpoint/safetensors.h"
#include "trainer/checkpoint/train_state.h"
#include "trainer/config/builders.h"
#include "trainer/config/config.h"
#include "trainer/interop/diffusers_export.h"
#include "trainer/interop/diffusers_import.h"
#include "trainer/interop/diffusers_layout.h"
#include "trainer/model/unet.h"

namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

ddpm::Config shipped(const std::string& name, const std::vector<std::string>& overrides = {}) {
  return ddpm::load_config((fs::path(DDPM_SOURCE_DIR) / "configs" / name).string(), overrides);
}

// name → "d0,d1,..." as diffusers' state dict has them.
std::map<std::string, std::string> golden_keys(const std::string& layout) {
  std::ifstream in(fs::path(DDPM_SOURCE_DIR) / "tests" / "interop" / "golden" / (layout + "_keys.txt"));
  EXPECT_TRUE(in) << layout;
  std::map<std::string, std::string> keys;
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    const size_t space = line.find(' ');
    keys[line.substr(0, space)] = line.substr(space + 1);
  }
  return keys;
}

std::string shape_text(c10::IntArrayRef shape) {
  std::string text;
  for (const int64_t d : shape) text += (text.empty() ? "" : ",") + std::to_string(d);
  return text;
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const std::exception& e) {
    return e.what();
  }
  ADD_FAILURE() << "no error";
  return "";
}

void expect_contains(const std::string& text, const std::string& part) {
  EXPECT_NE(text.find(part), std::string::npos) << "'" << part << "' not in: " << text;
}

class DiffusersLayout : public ::testing::TestWithParam<std::pair<const char*, const char*>> {};

// Every parameter of ours is one of diffusers' by name and shape, and every one of diffusers' is one of ours.
TEST_P(DiffusersLayout, EveryParameterHasItsUNet2DModelNameAndShape) {
  const auto [config_name, layout] = GetParam();
  const ddpm::Config config = shipped(config_name);
  const ddpm::UNet model(ddpm::unet_options(config));
  const std::map<std::string, std::string> golden = golden_keys(layout);
  std::set<std::string> mapped;
  for (const auto& item : model->named_parameters()) {
    const ddpm::DiffusersParameter p = ddpm::diffusers_parameter(item.key(), model->options());
    EXPECT_TRUE(mapped.insert(p.theirs).second) << "two of ours map to " << p.theirs;
    const auto found = golden.find(p.theirs);
    if (found == golden.end()) {
      ADD_FAILURE() << item.key() << " → " << p.theirs << ": not in diffusers' state dict";
      continue;
    }
    const torch::Tensor value = p.squeeze_1x1 ? item.value().flatten(1) : item.value();
    EXPECT_EQ(shape_text(value.sizes()), found->second) << item.key() << " → " << p.theirs;
  }
  EXPECT_EQ(mapped.size(), golden.size());
  for (const auto& [name, shape] : golden) EXPECT_EQ(mapped.count(name), 1u) << name << " has no parameter of ours";
}

INSTANTIATE_TEST_SUITE_P(ShippedConfigs, DiffusersLayout,
                         ::testing::Values(std::pair{"smoke.yaml", "smoke"}, std::pair{"cifar10.yaml", "cifar10"}));

TEST(DiffusersNames, MapTheUpPathFromTheDeepestLevelAndRefuseOthers) {
  const ddpm::UNetOptions options = ddpm::unet_options(shipped("cifar10.yaml"));
  EXPECT_EQ(ddpm::diffusers_parameter("up_3_2_res.skip.weight", options).theirs, "up_blocks.0.resnets.2.conv_shortcut.weight");
  EXPECT_EQ(ddpm::diffusers_parameter("upsample_1.bias", options).theirs, "up_blocks.2.upsamplers.0.conv.bias");
  EXPECT_EQ(ddpm::diffusers_parameter("down_1_0_attn.proj_out.weight", options).theirs, "down_blocks.1.attentions.0.to_out.0.weight");
  EXPECT_TRUE(ddpm::diffusers_parameter("mid_attn.q.weight", options).squeeze_1x1);
  EXPECT_FALSE(ddpm::diffusers_parameter("mid_attn.q.bias", options).squeeze_1x1);
  EXPECT_FALSE(ddpm::diffusers_parameter("mid_attn.norm.weight", options).squeeze_1x1);
  EXPECT_THROW(ddpm::diffusers_parameter("down_0_0_res.gate.weight", options), std::invalid_argument);
  EXPECT_THROW(ddpm::diffusers_parameter("head.weight", options), std::invalid_argument);
}

TEST(DiffusersConfig, DescribesTheDDPMUNet) {
  const json c = ddpm::diffusers_unet_config(shipped("cifar10.yaml"));
  EXPECT_EQ(c["_class_name"], "UNet2DModel");
  EXPECT_EQ(c["block_out_channels"], json({128, 256, 256, 256}));
  EXPECT_EQ(c["down_block_types"], json({"DownBlock2D", "AttnDownBlock2D", "DownBlock2D", "DownBlock2D"}));
  EXPECT_EQ(c["up_block_types"], json({"UpBlock2D", "UpBlock2D", "AttnUpBlock2D", "UpBlock2D"}));
  EXPECT_EQ(c["downsample_padding"], 0);
  EXPECT_EQ(c["flip_sin_to_cos"], false);
  EXPECT_EQ(c["freq_shift"], 1);
  EXPECT_TRUE(c["attention_head_dim"].is_null());
  EXPECT_EQ(c["norm_eps"].get<double>(), 1e-6);
  EXPECT_EQ(ddpm::diffusers_unet_config(shipped("smoke.yaml", {"diffusion.model_variance=learned_range", "diffusion.loss=hybrid"}))["out_channels"], 2);
  const json s = ddpm::diffusers_scheduler_config(shipped("smoke.yaml"));
  EXPECT_EQ(s["num_train_timesteps"], 100);
  EXPECT_DOUBLE_EQ(s["beta_start"].get<double>(), 1e-3);
  EXPECT_DOUBLE_EQ(s["beta_end"].get<double>(), 0.2);
  EXPECT_EQ(s["variance_type"], "fixed_large");
  EXPECT_EQ(ddpm::diffusers_scheduler_config(shipped("smoke.yaml", {"diffusion.schedule=cosine"}))["beta_schedule"], "squaredcos_cap_v2");
}

TEST(DiffusersConfig, RefusesWhatTheLayoutCannotExpress) {
  EXPECT_EQ(ddpm::diffusers_unexpressible(shipped("cifar10.yaml")), "");
  expect_contains(ddpm::diffusers_unexpressible(shipped("smoke.yaml", {"model.channel_mult=[2, 2]"})),
                  "model.channel_mult starts with 2");
  expect_contains(ddpm::diffusers_unexpressible(shipped("smoke.yaml", {"diffusion.model_variance=learned", "diffusion.loss=kl"})),
                  "diffusion.model_variance learned");
}

TEST(DiffusersConfig, ChecksAUNet2DModelConfigKeyByKey) {
  const ddpm::Config config = shipped("cifar10.yaml");
  const json ours = ddpm::diffusers_unet_config(config);
  EXPECT_NO_THROW(ddpm::check_diffusers_unet_config(ours, config, "c.json"));
  // A config.json in the form of google/ddpm-cifar10-32's (an early diffusers release's keys): keys left out take
  // diffusers' defaults.
  const json published = json::parse(R"({"_class_name": "UNet2DModel", "_diffusers_version": "0.0.4", "act_fn": "silu",
      "attention_head_dim": null, "block_out_channels": [128, 256, 256, 256], "center_input_sample": false,
      "down_block_types": ["DownBlock2D", "AttnDownBlock2D", "DownBlock2D", "DownBlock2D"], "downsample_padding": 0,
      "flip_sin_to_cos": false, "freq_shift": 1, "in_channels": 3, "layers_per_block": 2, "mid_block_scale_factor": 1,
      "norm_eps": 1e-06, "norm_num_groups": 32, "out_channels": 3, "sample_size": 32, "time_embedding_type": "positional",
      "up_block_types": ["UpBlock2D", "UpBlock2D", "AttnUpBlock2D", "UpBlock2D"]})");
  EXPECT_NO_THROW(ddpm::check_diffusers_unet_config(published, config, "c.json"));
  const auto refused = [&](const std::string& key, const json& value) {
    json changed = published;
    if (value.is_discarded()) {
      changed.erase(key);
    } else {
      changed[key] = value;
    }
    return error_of([&] { ddpm::check_diffusers_unet_config(changed, config, "dir/unet/config.json"); });
  };
  std::string e = refused("block_out_channels", json({64, 128, 128, 128}));
  expect_contains(e, "dir/unet/config.json: block_out_channels is [64,128,128,128]");
  expect_contains(e, "gives [128,256,256,256] (model.channels × model.channel_mult)");
  expect_contains(refused("downsample_padding", 1), "(model.downsample_padding)");
  expect_contains(refused("down_block_types", json({"DownBlock2D", "DownBlock2D", "AttnDownBlock2D", "DownBlock2D"})),
                  "model.attention_resolutions at data.image_size");
  expect_contains(refused("norm_eps", json::value_t::discarded), "norm_eps is 1e-05, but ddpm's U-Net (the DDPM architecture) has 1e-06 only");
  expect_contains(refused("attention_head_dim", 8), "attention_head_dim is 8");
  expect_contains(refused("flip_sin_to_cos", json::value_t::discarded), "flip_sin_to_cos is true");
  expect_contains(refused("_class_name", "UNet2DConditionModel"), "a config of another architecture (_class_name \"UNet2DConditionModel\")");
  expect_contains(refused("cross_attention_dim", 768), "key 'cross_attention_dim' is not one of UNet2DModel's");
  // One head as wide as the attention blocks is the same network as null; a square [32, 32] is sample_size 32;
  // "swish" and a "UNetRes" prefix are what diffusers reads as SiLU and the plain block types.
  json one_head = published;
  one_head["attention_head_dim"] = 256;
  one_head["sample_size"] = json({32, 32});
  one_head["act_fn"] = "swish";
  one_head["down_block_types"][0] = "UNetResDownBlock2D";
  EXPECT_NO_THROW(ddpm::check_diffusers_unet_config(one_head, config, "c.json"));
}

TEST(DiffusersConfig, ChecksTheSchedulerAndWarnsOnWhatOnlyChangesSampling) {
  const ddpm::Config config = shipped("cifar10.yaml");
  EXPECT_TRUE(ddpm::check_diffusers_scheduler_config(ddpm::diffusers_scheduler_config(config), config, "s.json").empty());
  // In the form of google/ddpm-cifar10-32's: fixed_small where the config samples fixed_large, a warning only.
  const json published = json::parse(R"({"_class_name": "DDPMScheduler", "beta_end": 0.02, "beta_schedule": "linear",
      "beta_start": 0.0001, "clip_sample": true, "num_train_timesteps": 1000, "trained_betas": null, "variance_type": "fixed_small"})");
  const std::vector<std::string> warnings = ddpm::check_diffusers_scheduler_config(published, config, "s.json");
  ASSERT_EQ(warnings.size(), 1u);
  expect_contains(warnings[0], "variance_type is 'fixed_small'");
  const auto refused = [&](const std::string& key, const json& value) {
    json changed = published;
    changed[key] = value;
    return error_of([&] { ddpm::check_diffusers_scheduler_config(changed, config, "s.json"); });
  };
  expect_contains(refused("num_train_timesteps", 4000), "num_train_timesteps is 4000, but the config");
  expect_contains(refused("num_train_timesteps", 4000), "diffusion.timesteps 1000");
  expect_contains(refused("beta_schedule", "scaled_linear"), "beta_schedule is 'scaled_linear'");
  expect_contains(refused("beta_end", 0.012), "beta_end is 0.012");
  expect_contains(refused("prediction_type", "v_prediction"), "prediction_type is 'v_prediction'");
  expect_contains(refused("variance_type", "learned_range"), "variance_type is 'learned_range'");
  expect_contains(refused("rescale_betas_zero_snr", true), "rescale_betas_zero_snr is true");
  // β given as a list: the schedule's (to float32 precision), or refused naming the first that is not.
  json listed = published;
  listed["variance_type"] = "fixed_large";
  listed["trained_betas"] = json::array();
  for (int64_t t = 0; t < 1000; ++t) listed["trained_betas"].push_back(static_cast<float>(1e-4 + (0.02 - 1e-4) * t / 999.0));
  EXPECT_TRUE(ddpm::check_diffusers_scheduler_config(listed, config, "s.json").empty());
  listed["trained_betas"][500] = 0.5;
  expect_contains(error_of([&] { ddpm::check_diffusers_scheduler_config(listed, config, "s.json"); }),
                  "s.json: trained_betas[500] is 0.5");
  listed["trained_betas"].erase(999);
  expect_contains(error_of([&] { ddpm::check_diffusers_scheduler_config(listed, config, "s.json"); }),
                  "trained_betas does not hold T = 1000 numbers");
  expect_contains(refused("beta_schedule", 3), "s.json: beta_schedule is 3, expected a string");
  expect_contains(refused("clip_sample", "yes"), "s.json: clip_sample is \"yes\", expected true or false");
  json thresholded = published;
  thresholded["thresholding"] = true;
  thresholded["variance_type"] = "fixed_large";
  const std::vector<std::string> notes = ddpm::check_diffusers_scheduler_config(thresholded, config, "s.json");
  ASSERT_EQ(notes.size(), 1u);
  expect_contains(notes[0], "thresholding is true");
}

class DiffusersRoundTrip : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("ddpm_interop_test_" + std::to_string(::getpid()));
    fs::remove_all(dir_);
    fs::create_directories(dir_ / "run");
    config_ = shipped("smoke.yaml", {"run.dir=" + (dir_ / "run").string()});
    // A checkpoint whose EMA differs from its model: an export of the wrong set would show.
    torch::manual_seed(5);
    ddpm::UNet model(ddpm::unet_options(config_));
    {
      torch::NoGradGuard no_grad;
      for (auto& p : model->parameters()) p.normal_(0.0, 0.1);
    }
    ddpm::TrainState state(model, ddpm::AdamOptions{}, config_.train.ema_rates);
    {
      torch::NoGradGuard no_grad;
      for (auto& p : model->parameters()) p.mul_(2.0);
    }
    state.step = 7;
    checkpoint_ = ddpm::write_checkpoint(dir_ / "run", state.to_checkpoint({ddpm::model_shape_signature(config_),
                                                                             ddpm::to_yaml(config_), 1}, {}))
                      .string();
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::vector<std::string> leftovers() const {
    std::vector<std::string> names;
    for (const auto& entry : fs::directory_iterator(dir_)) {
      if (entry.path().filename().string().find(".partial") != std::string::npos) names.push_back(entry.path().string());
    }
    return names;
  }
  fs::path dir_;
  ddpm::Config config_;
  std::string checkpoint_;
};

TEST_F(DiffusersRoundTrip, ExportThenImportGivesTheWeightsBitForBit) {
  ddpm::ExportRequest request{checkpoint_, "ema", ddpm::ExportDtype::kFloat32, dir_ / "exported"};
  const ddpm::ExportReport exported = ddpm::export_diffusers(config_, request);
  EXPECT_EQ(exported.tensors, 144);
  EXPECT_EQ(exported.parameters, 701345);  // diffusers' count of the same layout
  const ddpm::SafetensorsFile file = ddpm::read_safetensors(dir_ / "exported" / "unet" / "diffusion_pytorch_model.safetensors");
  EXPECT_EQ(file.metadata.at("format"), "pt");
  EXPECT_EQ(file.metadata.at("ddpm_weights"), "ema_0.99");
  const ddpm::ImportReport imported = ddpm::import_diffusers(dir_ / "exported", config_, dir_ / "imported");
  EXPECT_EQ(imported.weights_dtype, "F32");
  const ddpm::Checkpoint source = ddpm::read_checkpoint(checkpoint_);
  const ddpm::Checkpoint result = ddpm::read_checkpoint(imported.checkpoint);
  EXPECT_EQ(result.step, 0);
  int64_t compared = 0;
  for (const auto& [name, tensor] : source.tensors) {
    if (name.rfind("ema_0.99/", 0) != 0) continue;
    const std::string parameter = name.substr(std::string("ema_0.99/").size());
    EXPECT_TRUE(torch::equal(result.tensors.at("model/" + parameter), tensor)) << parameter;
    EXPECT_TRUE(torch::equal(result.tensors.at(name), tensor)) << parameter;
    EXPECT_FALSE(torch::equal(source.tensors.at("model/" + parameter), tensor)) << parameter;
    ++compared;
  }
  EXPECT_EQ(compared, 144);
  EXPECT_EQ(ddpm::load_config((dir_ / "imported" / "config.yaml").string()).run.dir, (dir_ / "imported").string());
  EXPECT_TRUE(leftovers().empty());
}

// The padding is the file's: the same weights under the other padding are another function.
TEST_F(DiffusersRoundTrip, ImportTakesTheDownsamplingPaddingFromTheFile) {
  ddpm::ExportRequest request{checkpoint_, "model", ddpm::ExportDtype::kFloat32, dir_ / "exported"};
  ddpm::export_diffusers(config_, request);  // padding 1, the smoke config's
  ddpm::Config paper = config_;
  paper.model.downsample_padding = 0;
  const ddpm::ImportReport imported = ddpm::import_diffusers(dir_ / "exported", paper, dir_ / "imported");
  ASSERT_EQ(imported.warnings.size(), 1u);
  expect_contains(imported.warnings[0], "model.downsample_padding 1 from " + (dir_ / "exported" / "unet" / "config.json").string());
  EXPECT_EQ(ddpm::load_config(imported.config.string()).model.downsample_padding, 1);
  const json meta = json::parse(ddpm::read_checkpoint(imported.checkpoint).metadata);
  EXPECT_EQ(meta["model_shape"].get<std::string>(), ddpm::model_shape_signature(config_));
  EXPECT_EQ(meta["world_size"], 0);
}

TEST_F(DiffusersRoundTrip, RefusalsLeaveNothingBehind) {
  fs::create_directories(dir_ / "taken");
  std::ofstream(dir_ / "taken" / "notes.txt") << "mine";
  ddpm::ExportRequest request{checkpoint_, "ema", ddpm::ExportDtype::kFloat32, dir_ / "taken"};
  expect_contains(error_of([&] { ddpm::export_diffusers(config_, request); }), "exists and is not an empty directory");
  EXPECT_TRUE(fs::exists(dir_ / "taken" / "notes.txt"));
  // "out/" as a shell completes it names out, not an empty name inside it.
  fs::create_directories(dir_ / "empty");
  request.output = (dir_ / "empty").string() + "/";
  ddpm::export_diffusers(config_, request);
  EXPECT_TRUE(fs::is_regular_file(dir_ / "empty" / "model_index.json"));
  request.output = dir_ / "out";
  request.weights = "ema_0.5";
  expect_contains(error_of([&] { ddpm::export_diffusers(config_, request); }), "--weights ema_0.5: expected model, ema, ema_0.99");
  request.weights = "model";
  const ddpm::Config other = shipped("smoke.yaml", {"model.channels=64"});
  expect_contains(error_of([&] { ddpm::export_diffusers(other, request); }), "it holds a model of another shape");
  EXPECT_FALSE(fs::exists(dir_ / "out"));
  ddpm::export_diffusers(config_, request);
  // The file of another model: import names the first tensor whose shape is not the config's.
  expect_contains(error_of([&] { ddpm::import_diffusers(dir_ / "out", other, dir_ / "imported"); }),
                  "block_out_channels is [32,64], but the config");
  // A tensor left out of the file.
  const fs::path weights = dir_ / "out" / "unet" / "diffusion_pytorch_model.safetensors";
  const ddpm::SafetensorsFile file = ddpm::read_safetensors(weights);
  std::vector<ddpm::SafetensorsInput> kept;
  for (const auto& t : file.tensors) {
    if (t.name != "mid_block.attentions.0.to_k.weight") kept.push_back({t.name, t.dtype, t.shape, std::string(file.data(t), t.end - t.begin)});
  }
  std::ofstream(weights, std::ios::binary | std::ios::trunc) << ddpm::encode_safetensors(kept);
  expect_contains(error_of([&] { ddpm::import_diffusers(dir_ / "out", config_, dir_ / "imported"); }),
                  "no tensor 'mid_block.attentions.0.to_k.weight' (ddpm's mid_attn.k.weight)");
  // A padding ddpm has no network for, a folder with no model, an output whose parent does not exist.
  const fs::path unet_config = dir_ / "out" / "unet" / "config.json";
  json edited = json::parse(std::ifstream(unet_config));
  edited["downsample_padding"] = 2;
  std::ofstream(unet_config, std::ios::trunc) << edited.dump();
  expect_contains(error_of([&] { ddpm::import_diffusers(dir_ / "out", config_, dir_ / "imported"); }),
                  unet_config.string() + ": downsample_padding is 2; ddpm's U-Net pads 0");
  expect_contains(error_of([&] { ddpm::import_diffusers(dir_ / "taken", config_, dir_ / "imported"); }),
                  "--from " + (dir_ / "taken").string() + ": neither unet/config.json nor config.json is there");
  request.output = dir_ / "no" / "such" / "dir";
  expect_contains(error_of([&] { ddpm::export_diffusers(config_, request); }),
                  "cannot write " + request.output.string() + ": no directory " + (dir_ / "no" / "such").string());
  EXPECT_FALSE(fs::exists(dir_ / "imported"));
  EXPECT_TRUE(leftovers().empty());
}

}  // namespace
