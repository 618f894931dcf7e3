// The strict YAML config: every shipped config loads, round-trips, and every kind of bad input is one
// error naming the key path and file:line.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <string>

#include <yaml-cpp/yaml.h>

#include "trainer/config/builders.h"
#include "trainer/config/config.h"

namespace {

namespace fs = std::filesystem;

class ConfigTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("ddpm_config_test_" + std::to_string(::getpid()));
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string write(const std::string& text) {
    const fs::path path = dir_ / ("c" + std::to_string(counter_++) + ".yaml");
    std::ofstream(path) << text;
    return path.string();
  }
  // The message of the ConfigError thrown by loading text (fails the test when nothing is thrown).
  std::string error_of(const std::string& text, const std::vector<std::string>& overrides = {}) {
    const std::string path = write(text);
    try {
      ddpm::load_config(path, overrides);
    } catch (const ddpm::ConfigError& e) {
      return e.what();
    }
    ADD_FAILURE() << "no error for:\n" << text;
    return "";
  }
  fs::path dir_;
  int counter_ = 0;
};

TEST_F(ConfigTest, ShippedConfigsLoad) {
  for (const char* name : {"cifar10.yaml", "fashion_mnist.yaml", "smoke.yaml"}) {
    const fs::path path = fs::path(DDPM_SOURCE_DIR) / "configs" / name;
    EXPECT_NO_THROW(ddpm::load_config(path.string())) << path;
  }
  const ddpm::Config cifar = ddpm::load_config((fs::path(DDPM_SOURCE_DIR) / "configs" / "cifar10.yaml").string());
  EXPECT_EQ(cifar.model.channels, 128);
  EXPECT_EQ(cifar.model.channel_mult, (std::vector<int64_t>{1, 2, 2, 2}));
  EXPECT_EQ(cifar.model.attention_resolutions, (std::vector<int64_t>{16}));
  EXPECT_DOUBLE_EQ(cifar.model.dropout, 0.1);
  EXPECT_EQ(cifar.diffusion.timesteps, 1000);
  EXPECT_TRUE(cifar.data.random_flip);
}

TEST_F(ConfigTest, DefaultsAreTheFashionMnistConfig) {
  const ddpm::Config shipped = ddpm::load_config((fs::path(DDPM_SOURCE_DIR) / "configs" / "fashion_mnist.yaml").string());
  EXPECT_EQ(ddpm::to_yaml(shipped), ddpm::to_yaml(ddpm::Config{}));
  EXPECT_NE(ddpm::to_yaml(ddpm::load_config((fs::path(DDPM_SOURCE_DIR) / "configs" / "cifar10.yaml").string())).find("lr: 0.0002\n"),
            std::string::npos);  // doubles print in their shortest form
}

TEST_F(ConfigTest, ResolvedYamlRoundTrips) {
  const ddpm::Config original = ddpm::load_config(write("train:\n  lr: 0.001\n  ema_rates: [0.999, 0.9999]\n"),
                                                  {"model.dropout=0.25", "run.seed=42"});
  const ddpm::Config again = ddpm::load_config(write(ddpm::to_yaml(original)));
  EXPECT_EQ(ddpm::to_yaml(original), ddpm::to_yaml(again));
  EXPECT_DOUBLE_EQ(again.train.lr, 0.001);
  EXPECT_DOUBLE_EQ(again.model.dropout, 0.25);
  EXPECT_EQ(again.run.seed, 42u);
  EXPECT_EQ(again.train.ema_rates, (std::vector<double>{0.999, 0.9999}));
}

TEST_F(ConfigTest, UnknownKeyNamesFileLineAndSuggests) {
  const std::string message = error_of("run:\n  seed: 1\ntrain:\n  learning_rate: 0.1\n  lr: 0.2\n");
  EXPECT_NE(message.find(":4:3: unknown key 'train.learning_rate'"), std::string::npos) << message;
  const std::string typo = error_of("train:\n  warmup_step: 10\n");
  EXPECT_NE(typo.find("did you mean 'warmup_steps'"), std::string::npos) << typo;
  const std::string section = error_of("trian:\n  lr: 0.1\n");
  EXPECT_NE(section.find("unknown section 'trian' (did you mean 'train'?)"), std::string::npos) << section;
}

TEST_F(ConfigTest, WrongTypeNamesKeyAndLine) {
  const std::string message = error_of("model:\n  channels: 128\n  num_res_blocks: two\n");
  EXPECT_NE(message.find(":3:19: model.num_res_blocks: expected an integer, got 'two'"), std::string::npos) << message;
  const std::string list = error_of("model:\n  channel_mult: 2\n");
  EXPECT_NE(list.find("model.channel_mult: expected a list of integers"), std::string::npos) << list;
}

TEST_F(ConfigTest, OutOfRangeValuesAreRejected) {
  EXPECT_NE(error_of("train:\n  lr: -1\n").find("train.lr: must be in (0, 1]"), std::string::npos);
  EXPECT_NE(error_of("diffusion:\n  timesteps: 1\n").find("diffusion.timesteps: must be at least 2"), std::string::npos);
  EXPECT_NE(error_of("diffusion:\n  schedule: cosin\n").find("did you mean 'cosine'"), std::string::npos);
  EXPECT_NE(error_of("data:\n  channels: 2\n").find("data.channels: must be 1 or 3"), std::string::npos);
  EXPECT_NE(error_of("diffusion:\n  timesteps: 20\n").find("too few for the linear schedule"), std::string::npos);
}

TEST_F(ConfigTest, ImageSizeTheModelCannotTakeIsRejected) {
  const std::string message = error_of("data:\n  image_size: 28\nmodel:\n  channel_mult: [1, 2, 2, 2]\n  attention_resolutions: []\n");
  EXPECT_NE(message.find("data.image_size 28 cannot be halved 3 times"), std::string::npos) << message;
  const std::string attention = error_of("data:\n  image_size: 32\nmodel:\n  attention_resolutions: [12]\n");
  EXPECT_NE(attention.find("model.attention_resolutions: 12"), std::string::npos) << attention;
}

TEST_F(ConfigTest, EmptyFilesDuplicatesAndBadListEntriesAreErrors) {
  EXPECT_NE(error_of("# nothing but a comment\n").find("the config file is empty"), std::string::npos);
  EXPECT_NE(error_of("train:\n  steps: 5\n  steps: 6\n").find(":3:3: duplicate key 'train.steps'"), std::string::npos)
      << error_of("train:\n  steps: 5\n  steps: 6\n");
  EXPECT_NE(error_of("train:\n  steps: 5\ntrain:\n  lr: 0.1\n").find(":3:1: duplicate section 'train'"), std::string::npos);
  EXPECT_NE(error_of("train:\n  steps:\n").find("train.steps: expected an integer, got an empty value"), std::string::npos);
  const std::string list = error_of("model:\n  channel_mult: [1, x]\n");
  EXPECT_NE(list.find("model.channel_mult: entry 2 of the list is 'x', not a number (an integer)"), std::string::npos) << list;
  EXPECT_NE(error_of("{}", {"run.dir="}).find("--set: run.dir: expected a string, got an empty value"), std::string::npos);
}

TEST_F(ConfigTest, OverridesAreCheckedLikeTheFile) {
  EXPECT_NE(error_of("{}", {"train.lrr=0.1"}).find("--set: unknown key 'train.lrr' (did you mean 'train.lr'?)"),
            std::string::npos);
  EXPECT_NE(error_of("{}", {"train.steps=many"}).find("--set: train.steps: expected an integer, got 'many'"),
            std::string::npos);
  EXPECT_NE(error_of("{}", {"train.steps"}).find("expected section.key=value"), std::string::npos);
  const ddpm::Config config = ddpm::load_config(write("{}"), {"model.channel_mult=[1, 2]", "model.attention_resolutions=[14]",
                                                            "data.random_flip=true"});
  EXPECT_EQ(config.model.channel_mult, (std::vector<int64_t>{1, 2}));
  EXPECT_TRUE(config.data.random_flip);
}

TEST_F(ConfigTest, MissingFileAndInvalidYamlAreClear) {
  try {
    ddpm::load_config((dir_ / "absent.yaml").string());
    ADD_FAILURE();
  } catch (const ddpm::ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("absent.yaml: cannot open"), std::string::npos);
  }
  EXPECT_NE(error_of("train: [unclosed\n").find("invalid YAML"), std::string::npos);
  EXPECT_NE(error_of("- a\n- b\n").find("must be a mapping"), std::string::npos);
}

// Each key is declared once (its schema row); a shipped config that lacks a key, or lists one the schema does not
// have, fails here. Unknown keys also fail loading, but a missing one would silently take the default.
TEST_F(ConfigTest, ShippedConfigsListEveryKeyOfTheSchemaOnceInItsOrder) {
  const std::vector<std::string> schema = ddpm::config_keys();
  EXPECT_EQ(schema.size(), 53u);  // a key added or removed: update the shipped configs and this count
  for (const char* name : {"cifar10.yaml", "fashion_mnist.yaml", "smoke.yaml"}) {
    const YAML::Node root = YAML::LoadFile((fs::path(DDPM_SOURCE_DIR) / "configs" / name).string());
    std::vector<std::string> listed;
    for (const auto& section : root) {
      for (const auto& key : section.second) listed.push_back(section.first.as<std::string>() + "." + key.first.as<std::string>());
    }
    EXPECT_EQ(listed, schema) << name;
  }
}

TEST_F(ConfigTest, NumbersPrintAsWritten) {
  const std::string yaml = ddpm::to_yaml(ddpm::load_config(write("train:\n  lr: 2e-4\n  grad_clip: 0.5\n"),
                                                           {"distributed.timeout_seconds=60", "train.ema_rates=[0.9999, 0.999]"}));
  for (const char* line : {"  timeout_seconds: 60\n", "  lr: 0.0002\n", "  grad_clip: 0.5\n", "  bucket_mb: 25\n",
                           "  ema_rates: [0.9999, 0.999]\n", "  dropout: 0.1\n", "  steps: 1500\n"}) {
    EXPECT_NE(yaml.find(line), std::string::npos) << line << "in\n" << yaml;
  }
  EXPECT_EQ(yaml.find("e+"), std::string::npos) << yaml;
  EXPECT_EQ(ddpm::to_yaml(ddpm::load_config(write(yaml))), yaml);  // and read back as the same values
}

TEST_F(ConfigTest, EnumLikeKeysAreParsedIntoTheirTypes) {
  const ddpm::Config config = ddpm::load_config(
      write("{}"), {"diffusion.schedule=cosine", "diffusion.model_variance=fixed_small", "diffusion.loss=kl",
                    "train.precision=bf16", "distributed.backend=mpi", "data.format=cifar10", "data.split=test",
                    "data.shard_tail=wrap", "run.device=cpu"});
  EXPECT_EQ(config.diffusion.schedule, ddpm::BetaSchedule::kCosine);
  EXPECT_EQ(config.diffusion.model_variance, ddpm::ModelVariance::kFixedSmall);
  EXPECT_EQ(config.diffusion.loss, ddpm::Objective::kKl);
  EXPECT_EQ(config.train.precision, ddpm::Precision::kBf16);
  EXPECT_EQ(config.distributed.backend, ddpm::CommBackend::kMpi);
  EXPECT_EQ(config.data.format, ddpm::DataFormat::kCifar10);
  EXPECT_EQ(config.data.split, ddpm::DataSplit::kTest);
  EXPECT_EQ(config.data.shard_tail, ddpm::ShardTail::kWrap);
  EXPECT_EQ(config.run.device, ddpm::DeviceChoice::kCpu);
  const ddpm::Config defaults;
  EXPECT_EQ(defaults.diffusion.schedule, ddpm::BetaSchedule::kLinear);
  EXPECT_EQ(defaults.train.precision, ddpm::Precision::kFp32);
  EXPECT_STREQ(ddpm::choice_name(config.diffusion.model_variance), "fixed_small");
  EXPECT_NE(error_of("run:\n  device: \"cpu\\r\"\n").find("run.device: contains a control character (byte 0x0d at offset 3"),
            std::string::npos);
}

// The improved-DDPM keys: parsed into their types; hybrid needs a learned variance; only a learned variance enters the
// shape signature (fixed-variance checkpoints of every build match under either fixed kind).
TEST_F(ConfigTest, ImprovedDdpmKeysAndTheirChecks) {
  const ddpm::Config config = ddpm::load_config(
      write("{}"), {"diffusion.model_variance=learned_range", "diffusion.loss=hybrid", "train.timestep_sampler=loss_second_moment"});
  EXPECT_EQ(config.diffusion.model_variance, ddpm::ModelVariance::kLearnedRange);
  EXPECT_EQ(config.diffusion.loss, ddpm::Objective::kHybrid);
  EXPECT_EQ(config.train.timestep_sampler, ddpm::TimestepSamplerKind::kLossSecondMoment);
  EXPECT_EQ(ddpm::load_config(write("{}"), {"diffusion.loss=rescaled_kl", "diffusion.model_variance=learned"}).diffusion.loss,
            ddpm::Objective::kRescaledKl);
  EXPECT_EQ(ddpm::Config().train.timestep_sampler, ddpm::TimestepSamplerKind::kUniform);
  const std::string hybrid_fixed = error_of("diffusion:\n  loss: hybrid\n");
  EXPECT_NE(hybrid_fixed.find("diffusion.loss hybrid"), std::string::npos) << hybrid_fixed;
  EXPECT_NE(hybrid_fixed.find("diffusion.model_variance fixed_large"), std::string::npos) << hybrid_fixed;
  EXPECT_NE(error_of("train:\n  timestep_sampler: importance\n").find("uniform, loss_second_moment"), std::string::npos);
  // L_simple alone would leave a learned variance untrained (v = 0 from the zero-initialized output conv).
  EXPECT_NE(error_of("diffusion:\n  model_variance: learned\n").find("diffusion.loss simple does not train"), std::string::npos);
  const std::string fixed = ddpm::model_shape_signature(ddpm::Config());
  EXPECT_EQ(fixed.find("model_variance"), std::string::npos) << fixed;
  ddpm::Config small;
  small.diffusion.model_variance = ddpm::ModelVariance::kFixedSmall;
  EXPECT_EQ(ddpm::model_shape_signature(small), fixed);
  EXPECT_NE(ddpm::model_shape_signature(config).find("diffusion.model_variance: learned_range\n"), std::string::npos);
  EXPECT_EQ(ddpm::unet_options(config).out_channels, 2);  // ε and v
  EXPECT_EQ(ddpm::unet_options(small).out_channels, 1);
}

// Ho et al.'s padding (0) is a different function of the same weights: it is in the signature. The default (1) is not,
// so that the checkpoints of earlier builds, which had no key and padded 1, still match.
TEST_F(ConfigTest, DownsamplePaddingEntersTheSignatureOnlyWhenItIsTheReferences) {
  const ddpm::Config defaults;
  EXPECT_EQ(defaults.model.downsample_padding, 1);
  EXPECT_EQ(ddpm::model_shape_signature(defaults).find("downsample_padding"), std::string::npos);
  const ddpm::Config paper = ddpm::load_config(write("{}"), {"model.downsample_padding=0"});
  EXPECT_NE(ddpm::model_shape_signature(paper).find("model.downsample_padding: 0\n"), std::string::npos);
  EXPECT_EQ(ddpm::unet_options(paper).downsample_padding, 0);
  const std::string two = error_of("model:\n  downsample_padding: 2\n");
  EXPECT_NE(two.find("model.downsample_padding: must be in [0, 1], got 2"), std::string::npos) << two;
  EXPECT_EQ(ddpm::load_config((fs::path(DDPM_SOURCE_DIR) / "configs" / "cifar10.yaml").string()).model.downsample_padding, 0);
}

TEST_F(ConfigTest, KeysAreListedWithTypeDefaultAndHelp) {
  const std::string keys = ddpm::describe_keys();
  for (const std::string& key : ddpm::config_keys()) {
    EXPECT_NE(("\n" + keys).find("\n" + key + "  ("), std::string::npos) << key;
  }
  EXPECT_EQ(keys.rfind("run.dir  (a string; default runs/fashion_mnist)\n", 0), 0u) << keys;
  EXPECT_NE(keys.find("train.lr  (a number; default 0.001)\n    Adam's learning rate after warmup\n"), std::string::npos);
  EXPECT_NE(keys.find("diffusion.schedule  (one of linear | cosine; default linear)\n"), std::string::npos);
  EXPECT_NE(keys.find("model.channel_mult  (a list of integers; default [1, 2, 2]) [must match to resume]\n"),
            std::string::npos);
}

// The signature a checkpoint is checked against on resume: the same text as the earlier hand-written one, so that
// the checkpoints of existing runs still resume.
TEST_F(ConfigTest, ShapeSignatureHoldsTheShapeKeysOnly) {
  EXPECT_EQ(ddpm::model_shape_signature(ddpm::Config{}),
            "data.image_size: 28\ndata.channels: 1\nmodel.channels: 32\nmodel.channel_mult: [1, 2, 2]\n"
            "model.num_res_blocks: 1\nmodel.attention_resolutions: [7]\ndiffusion.timesteps: 1000\n"
            "train.ema_rates: [0.995]\n");
  const ddpm::Config other = ddpm::load_config(write("{}"), {"train.lr=0.5", "model.dropout=0"});
  EXPECT_EQ(ddpm::model_shape_signature(other), ddpm::model_shape_signature(ddpm::Config{}));
  // Rates keep the earlier builds' 6 significant digits (their checkpoints hold that text), unlike the printed config.
  const ddpm::Config rates = ddpm::load_config(write("{}"), {"train.ema_rates=[0.1234567, 0.9999]"});
  EXPECT_NE(ddpm::model_shape_signature(rates).find("train.ema_rates: [0.123457, 0.9999]\n"), std::string::npos);
  EXPECT_NE(ddpm::to_yaml(rates).find("ema_rates: [0.1234567, 0.9999]\n"), std::string::npos);
}

}  // namespace
