// Training end to end on the smoke config (real Fashion-MNIST files, CPU): the loss goes down, a run stopped
// and resumed ends bit-identical to an uninterrupted one, and a run directory is never clobbered.
#include <gtest/gtest.h>

#include <chrono>
#include <csignal>
#include <mpi.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "distributed/mpi_context.h"
#include "trainer/config/builders.h"
#include "trainer/checkpoint/checkpoint.h"
#include "trainer/eval/inference.h"
#include "distributed/stop_signal.h"
#include "trainer/diffusion/respace.h"
#include "trainer/loop/trainer.h"
#include "tests/mpi_main.h"

namespace {

namespace fs = std::filesystem;

class TrainerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = fs::temp_directory_path() / ("ddpm_trainer_test_" + std::to_string(::getpid()) + "_" +
                                         ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(root_);
    fs::create_directories(root_);
  }
  void TearDown() override { fs::remove_all(root_); }

  ddpm::Config smoke(const std::string& run, int64_t steps) const {
    return ddpm::load_config((fs::path(DDPM_SOURCE_DIR) / "configs" / "smoke.yaml").string(),
                             {"run.dir=" + (root_ / run).string(), "train.steps=" + std::to_string(steps),
                              "train.checkpoint_every=4", "train.keep_checkpoints=5", "train.log_every=2"});
  }
  static void train(const ddpm::Config& config) {
    ddpm::TrainerOptions options;
    options.progress = ddpm::ProgressMode::kSilent;
    ddpm::Trainer trainer(config, ddpm_test::mpi(), torch::kCPU, options);
    trainer.train();
  }
  fs::path root_;
};

TEST_F(TrainerTest, ResumedRunIsBitIdenticalToUninterrupted) {
  train(smoke("straight", 12));
  train(smoke("resumed", 6));  // stops between checkpoints: its final checkpoint is at step 6
  train(smoke("resumed", 12));
  const ddpm::Checkpoint a = ddpm::read_checkpoint(root_ / "straight" / ddpm::checkpoint_file_name(12));
  const ddpm::Checkpoint b = ddpm::read_checkpoint(root_ / "resumed" / ddpm::checkpoint_file_name(12));
  ASSERT_EQ(a.tensors.size(), b.tensors.size());
  int64_t compared = 0;
  for (const auto& [name, tensor] : a.tensors) {
    ASSERT_TRUE(b.tensors.count(name)) << name;
    EXPECT_TRUE(torch::equal(tensor, b.tensors.at(name))) << name << " differs after resume";
    ++compared;
  }
  EXPECT_GT(compared, 150);  // model, EMA, Adam moments and RNG state
  EXPECT_EQ(a.tensors.at("adam/step").item<float>(), 12.0f);
  EXPECT_GT(a.tensors.at("adam/exp_avg_sq/conv_out.weight").abs().sum().item<double>(), 0.0);
  // And training did change the weights: the step-12 model differs from the step-4 one.
  const ddpm::Checkpoint early = ddpm::read_checkpoint(root_ / "straight" / ddpm::checkpoint_file_name(4));
  EXPECT_FALSE(torch::equal(early.tensors.at("model/conv_out.weight"), a.tensors.at("model/conv_out.weight")));
}

// train.adam_beta2 reaches Adam: after one step v = (1 - β₂) g², m = (1 - β₁) g whatever β₂ (same seed, same g).
TEST_F(TrainerTest, AdamBeta2ReachesTheOptimizer) {
  train(smoke("default", 1));
  ddpm::Config config = smoke("beta2", 1);
  config.train.adam_beta2 = 0.5;
  train(config);
  const ddpm::Checkpoint a = ddpm::read_checkpoint(root_ / "default" / ddpm::checkpoint_file_name(1));
  const ddpm::Checkpoint b = ddpm::read_checkpoint(root_ / "beta2" / ddpm::checkpoint_file_name(1));
  const std::string name = "conv_out.weight";  // the output conv starts at zero: only its gradient is non-zero at step 1
  EXPECT_TRUE(torch::equal(a.tensors.at("adam/exp_avg/" + name), b.tensors.at("adam/exp_avg/" + name)));
  const torch::Tensor va = a.tensors.at("adam/exp_avg_sq/" + name).to(torch::kFloat64);
  const torch::Tensor vb = b.tensors.at("adam/exp_avg_sq/" + name).to(torch::kFloat64);
  ASSERT_GT(va.abs().sum().item<double>(), 0.0);
  EXPECT_TRUE(torch::allclose(vb, va * (0.5 / (1.0 - 0.999)), 1e-4, 1e-30));
}

// train.cuda_graph replays a step that reads its inputs from device tensors refilled before each step (the
// batch, the step index the draws hash, the stop flag, the learning rate) and leaves its outputs in the same
// tensors. That path runs here without the capture, and on a CPU it must end bit-identical to the ordinary step
// (a stale input, the same step index or learning rate every step, would not).
TEST_F(TrainerTest, StaticStepInputsTrainBitIdenticallyToTheOrdinaryStep) {
  train(smoke("ordinary", 8));
  {
    ddpm::TrainerOptions options;
    options.progress = ddpm::ProgressMode::kSilent;
    options.static_step_inputs = true;
    ddpm::Trainer trainer(smoke("static", 8), ddpm_test::mpi(), torch::kCPU, options);
    trainer.train();
  }
  for (const int64_t step : {4, 8}) {
    const ddpm::Checkpoint a = ddpm::read_checkpoint(root_ / "ordinary" / ddpm::checkpoint_file_name(step));
    const ddpm::Checkpoint b = ddpm::read_checkpoint(root_ / "static" / ddpm::checkpoint_file_name(step));
    ASSERT_EQ(a.tensors.size(), b.tensors.size());
    for (const auto& [name, tensor] : a.tensors) EXPECT_TRUE(torch::equal(tensor, b.tensors.at(name))) << name << " at step " << step;
  }
  std::ifstream ordinary(root_ / "ordinary" / "train_log.jsonl"), by_static(root_ / "static" / "train_log.jsonl");
  int lines = 0;
  for (std::string x, y; std::getline(ordinary, x) && std::getline(by_static, y); ++lines) {
    EXPECT_EQ(nlohmann::json::parse(x)["loss"], nlohmann::json::parse(y)["loss"]) << "log line " << lines;
  }
  EXPECT_EQ(lines, 4);
}

TEST_F(TrainerTest, LossGoesDownAndTheLogHasEveryFigure) {
  train(smoke("learn", 30));
  std::ifstream log(root_ / "learn" / "train_log.jsonl");
  std::vector<nlohmann::json> lines;
  for (std::string line; std::getline(log, line);) lines.push_back(nlohmann::json::parse(line));
  ASSERT_EQ(lines.size(), 15u);
  for (const char* key : {"step", "loss", "grad_norm", "lr", "images_per_second", "eta_seconds"}) {
    EXPECT_TRUE(lines.front().contains(key)) << key;
  }
  // A fresh model predicts ε = 0, so the first losses are ≈ E[ε²] = 1; 30 steps bring it well below.
  EXPECT_GT(lines.front()["loss"].get<double>(), 0.7);
  EXPECT_LT(lines.back()["loss"].get<double>(), 0.5 * lines.front()["loss"].get<double>());
  // Linear warmup over 5 steps to lr 1e-3.
  EXPECT_EQ(lines[0]["step"].get<int64_t>(), 2);
  EXPECT_NEAR(lines[0]["lr"].get<double>(), 4e-4, 1e-12);  // the lr of step 2: 2/5 of 1e-3
  EXPECT_NEAR(lines.back()["lr"].get<double>(), 1e-3, 1e-12);
  EXPECT_EQ(ddpm::list_checkpoints(root_ / "learn").size(), 5u);  // keep_checkpoints
}

// The `kl` objective trains on the true bound terms (bits/dim of the sampled t) instead of ε-MSE.
TEST_F(TrainerTest, KlObjectiveTrainsOnTheBoundTerms) {
  ddpm::Config config = smoke("kl", 12);
  config.diffusion.loss = ddpm::Objective::kKl;
  train(config);
  std::ifstream log(root_ / "kl" / "train_log.jsonl");
  std::vector<double> losses;
  for (std::string line; std::getline(log, line);) losses.push_back(nlohmann::json::parse(line)["loss"].get<double>());
  ASSERT_EQ(losses.size(), 6u);
  for (double loss : losses) EXPECT_TRUE(std::isfinite(loss) && loss > 0);
  // A fresh model's bound terms at a random t are far from ε-MSE's ≈ 1: a different objective is in use.
  EXPECT_GT(std::abs(losses.front() - 1.0), 0.05);
  EXPECT_LT(losses.back(), losses.front());
}

std::vector<double> logged_losses(const fs::path& run) {
  std::ifstream log(run / "train_log.jsonl");
  std::vector<double> losses;
  for (std::string line; std::getline(log, line);) losses.push_back(nlohmann::json::parse(line)["loss"].get<double>());
  return losses;
}

// A learned variance: the U-Net has 2C outputs, hybrid and rescaled_kl train it, and the bound evaluation and the
// sampler read σ from it.
TEST_F(TrainerTest, LearnedVarianceTrainsUnderHybridAndRescaledKl) {
  for (const ddpm::Objective objective : {ddpm::Objective::kHybrid, ddpm::Objective::kRescaledKl}) {
    const std::string name = ddpm::choice_name(objective);
    ddpm::Config config = smoke(name, 12);
    config.diffusion.model_variance = ddpm::ModelVariance::kLearnedRange;
    config.diffusion.loss = objective;
    train(config);
    const std::vector<double> losses = logged_losses(root_ / name);
    ASSERT_EQ(losses.size(), 6u) << name;
    for (double loss : losses) EXPECT_TRUE(std::isfinite(loss) && loss > 0) << name;
    EXPECT_LT(losses.back(), losses.front()) << name;
    const ddpm::Checkpoint checkpoint = ddpm::read_checkpoint(root_ / name / ddpm::checkpoint_file_name(12));
    EXPECT_EQ(checkpoint.tensors.at("model/conv_out.weight").size(0), 2) << name;  // ε and v
    // The v channel trained too: its output weights left zero (the U-Net's zero-initialized output conv).
    EXPECT_GT(checkpoint.tensors.at("model/conv_out.weight")[1].abs().sum().item<double>(), 0.0) << name;
    if (objective == ddpm::Objective::kRescaledKl) {
      // A fresh model's rescaled bound term is T times a bits/dim figure: far above ε-MSE's ≈ 1.
      EXPECT_GT(losses.front(), 5.0);
      const ddpm::LoadedModel loaded = ddpm::load_model(config, ddpm::resolve_checkpoint(config, ""), false, torch::kCPU);
      const ddpm::GaussianDiffusion diffusion = ddpm::make_diffusion(config);
      const torch::Tensor images = torch::rand({2, 1, 28, 28}) * 2 - 1;
      ddpm::UNet model = loaded.model;
      const ddpm::BoundReport report =
          ddpm::evaluate_bound(model, diffusion, images, 2, true, 1, ddpm_test::mpi(), torch::kCPU);
      EXPECT_TRUE(std::isfinite(report.total_bpd) && report.total_bpd > 0);
      const torch::Tensor samples = ddpm::sample_images(model, ddpm::respace(diffusion, "5"), 2, 3, 2, torch::kCPU);
      EXPECT_EQ(samples.sizes(), torch::IntArrayRef({2, 1, 28, 28}));
    }
  }
}

// Only a learned variance changes the model: a fixed_small config resumes a fixed_large run (their checkpoints, of
// this and of earlier builds, carry no variance line), a learned_range config refuses it, naming the key.
TEST_F(TrainerTest, FixedVarianceRunsResumeUnderEitherFixedKindAndRefuseALearnedOne) {
  train(smoke("fixed", 4));
  ddpm::Config small = smoke("fixed", 8);
  small.diffusion.model_variance = ddpm::ModelVariance::kFixedSmall;
  train(small);
  EXPECT_EQ(ddpm::list_checkpoints(root_ / "fixed").size(), 2u);
  ddpm::Config learned = smoke("fixed", 12);
  learned.diffusion.model_variance = ddpm::ModelVariance::kLearnedRange;
  learned.diffusion.loss = ddpm::Objective::kHybrid;
  try {
    train(learned);
    ADD_FAILURE() << "a learned-variance config trained on a fixed-variance run";
  } catch (const std::exception& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("holds checkpoints of another run"), std::string::npos) << what;
    EXPECT_NE(what.find("diffusion.model_variance learned_range in the config"), std::string::npos) << what;
    EXPECT_NE(what.find((root_ / "fixed").string()), std::string::npos) << what;
  }
  EXPECT_EQ(ddpm::list_checkpoints(root_ / "fixed").size(), 2u);
  // And the other way round: a learned-variance run refuses a fixed-variance config.
  ddpm::Config learned_run = smoke("learned", 2);
  learned_run.diffusion.model_variance = ddpm::ModelVariance::kLearnedRange;
  learned_run.diffusion.loss = ddpm::Objective::kHybrid;
  train(learned_run);
  try {
    train(smoke("learned", 4));
    ADD_FAILURE() << "a fixed-variance config trained on a learned-variance run";
  } catch (const std::exception& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("diffusion.model_variance learned_range in the checkpoint, a kind with the default model shape in "
                        "the config"),
              std::string::npos)
        << what;
  }
}

ddpm::Config importance_sampled(ddpm::Config config) {
  config.train.timestep_sampler = ddpm::TimestepSamplerKind::kLossSecondMoment;
  config.diffusion.timesteps = 25;  // 250 losses fill the history: warm within a short run
  config.train.batch_size = 16;
  return config;
}

// loss_second_moment: its history is checkpointed and a resumed run ends bit-identical to an uninterrupted one,
// sampler state included; before the history is full it trains exactly as uniform t.
TEST_F(TrainerTest, LossSecondMomentResumesBitExactlyAndWarmsUp) {
  train(importance_sampled(smoke("straight", 32)));
  train(importance_sampled(smoke("resumed", 12)));
  const ddpm::Checkpoint early = ddpm::read_checkpoint(root_ / "resumed" / ddpm::checkpoint_file_name(12));
  train(importance_sampled(smoke("resumed", 32)));
  const ddpm::Checkpoint a = ddpm::read_checkpoint(root_ / "straight" / ddpm::checkpoint_file_name(32));
  const ddpm::Checkpoint b = ddpm::read_checkpoint(root_ / "resumed" / ddpm::checkpoint_file_name(32));
  ASSERT_EQ(a.tensors.size(), b.tensors.size());
  for (const auto& [name, tensor] : a.tensors) {
    ASSERT_TRUE(b.tensors.count(name)) << name;
    EXPECT_TRUE(torch::equal(tensor, b.tensors.at(name))) << name << " differs after resume";
  }
  const torch::Tensor counts = a.tensors.at("timestep_sampler/counts");
  const torch::Tensor history = a.tensors.at("timestep_sampler/history");
  EXPECT_EQ(counts.sizes(), torch::IntArrayRef({25}));
  EXPECT_TRUE((counts == 10).all().item<bool>()) << counts;  // warm: 512 draws, every t at least 10 times
  EXPECT_GT(history.min().item<double>(), 0.0);
  // The resumed run did restore the history: at step 12 it was not full yet, and some t had losses.
  EXPECT_GT(early.tensors.at("timestep_sampler/counts").sum().item<int64_t>(), 100);
  EXPECT_FALSE((early.tensors.at("timestep_sampler/counts") == 10).all().item<bool>());
  // Before the history is full (64 losses after 4 steps) the run is the uniform one, bit for bit.
  train(importance_sampled(smoke("cold", 4)));
  ddpm::Config uniform = importance_sampled(smoke("uniform", 4));
  uniform.train.timestep_sampler = ddpm::TimestepSamplerKind::kUniform;
  train(uniform);
  const ddpm::Checkpoint cold = ddpm::read_checkpoint(root_ / "cold" / ddpm::checkpoint_file_name(4));
  const ddpm::Checkpoint plain = ddpm::read_checkpoint(root_ / "uniform" / ddpm::checkpoint_file_name(4));
  EXPECT_TRUE(torch::equal(cold.tensors.at("model/conv_out.weight"), plain.tensors.at("model/conv_out.weight")));
  EXPECT_EQ(plain.tensors.count("timestep_sampler/counts"), 0u);
  // That uniform run resumed under loss_second_moment: a warning, and a history of only the new steps' 4 x 16 losses.
  testing::internal::CaptureStderr();
  train(importance_sampled(smoke("uniform", 8)));
  const std::string printed = testing::internal::GetCapturedStderr();
  EXPECT_NE(printed.find("holds no timestep sampler state"), std::string::npos) << printed;
  const ddpm::Checkpoint resumed = ddpm::read_checkpoint(root_ / "uniform" / ddpm::checkpoint_file_name(8));
  EXPECT_EQ(resumed.tensors.at("timestep_sampler/counts").sum().item<int64_t>(), 64);
}

TEST_F(TrainerTest, RunDirectoryOfAnotherRunIsRefusedAndLeftAlone) {
  train(smoke("mine", 4));
  const std::string config_before = [&] {
    std::ifstream in(root_ / "mine" / "config.yaml");
    return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  }();
  ddpm::Config other = smoke("mine", 8);
  other.model.channels = 64;
  try {
    train(other);
    ADD_FAILURE() << "a run of another shape trained in the directory";
  } catch (const std::exception& e) {
    EXPECT_NE(std::string(e.what()).find("holds checkpoints of another run"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("model.channels 32 in the checkpoint, 64 in the config"), std::string::npos)
        << e.what();
  }
  std::ifstream in(root_ / "mine" / "config.yaml");
  EXPECT_EQ(std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>()), config_before);
  EXPECT_EQ(ddpm::list_checkpoints(root_ / "mine").size(), 1u);
}

TEST_F(TrainerTest, CorruptNewestCheckpointFallsBackToThePreviousOne) {
  train(smoke("fallback", 8));
  const fs::path newest = root_ / "fallback" / ddpm::checkpoint_file_name(8);
  fs::resize_file(newest, fs::file_size(newest) / 2);
  ddpm::TrainerOptions options;
  options.progress = ddpm::ProgressMode::kSilent;
  ddpm::Trainer trainer(smoke("fallback", 8), ddpm_test::mpi(), torch::kCPU, options);
  EXPECT_EQ(trainer.step(), 4);
  EXPECT_NE(trainer.start_description().find(ddpm::checkpoint_file_name(4)), std::string::npos);
  EXPECT_TRUE(fs::exists(newest));  // kept for the user to inspect
}

TEST_F(TrainerTest, CheckpointsThatAllFailToVerifyAreNotBuriedByAFreshRun) {
  train(smoke("broken", 4));
  const fs::path only = root_ / "broken" / ddpm::checkpoint_file_name(4);
  fs::resize_file(only, 64);
  try {
    train(smoke("broken", 8));
    ADD_FAILURE() << "started from scratch over unreadable checkpoints";
  } catch (const std::exception& e) {
    EXPECT_NE(std::string(e.what()).find("holds checkpoints, but none verifies"), std::string::npos) << e.what();
  }
  EXPECT_EQ(ddpm::list_checkpoints(root_ / "broken").size(), 1u);
}

TEST_F(TrainerTest, SamplingIsReproducibleAndEvaluationReportsEveryTerm) {
  ddpm::Config config = smoke("infer", 8);
  config.diffusion.timesteps = 30;
  train(config);
  ddpm::LoadedModel loaded = ddpm::load_model(config, ddpm::resolve_checkpoint(config, ""), false, torch::kCPU);
  EXPECT_EQ(loaded.step, 8);
  const ddpm::GaussianDiffusion diffusion = ddpm::make_diffusion(config);
  const torch::Tensor a = ddpm::sample_images(loaded.model, diffusion, 3, 7, 2, torch::kCPU);
  const torch::Tensor b = ddpm::sample_images(loaded.model, diffusion, 3, 7, 2, torch::kCPU);
  const torch::Tensor c = ddpm::sample_images(loaded.model, diffusion, 3, 8, 2, torch::kCPU);
  EXPECT_EQ(a.sizes(), torch::IntArrayRef({3, 1, 28, 28}));
  EXPECT_EQ(a.scalar_type(), torch::kUInt8);
  EXPECT_TRUE(torch::equal(a, b));
  EXPECT_FALSE(torch::equal(a, c));
  // Image i depends on (seed, i) alone, not on the batch it was drawn in (keyed noise; on a CPU the inference
  // form's ε of an image does not depend on its batch either), bit for bit.
  EXPECT_TRUE(torch::equal(a, ddpm::sample_images(loaded.model, diffusion, 3, 7, 3, torch::kCPU)));
  // A config trained with train.cuda_graph still samples on a CPU, the same images (graphs are for GPUs only).
  ddpm::SamplerOptions graphed;
  graphed.cuda_graph = true;
  EXPECT_TRUE(torch::equal(a, ddpm::sample_images(loaded.model, diffusion, 3, 7, 2, torch::kCPU, graphed)));

  const torch::Tensor images = torch::rand({4, 1, 28, 28}).mul(255).round().div(127.5).sub(1);
  const ddpm::BoundReport report = ddpm::evaluate_bound(loaded.model, diffusion, images, 2, true, 0, ddpm_test::mpi(), torch::kCPU);
  ASSERT_EQ(report.per_t_bpd.size(), 30u);
  double sum = report.prior_bpd;
  for (double v : report.per_t_bpd) sum += v;
  EXPECT_NEAR(report.total_bpd, sum, 1e-5);  // the per-image total is summed in float32
  EXPECT_NEAR(report.decoder_bpd, report.per_t_bpd[0], 1e-12);
  EXPECT_NEAR(report.vb_sum_bpd + report.decoder_bpd + report.prior_bpd, report.total_bpd, 1e-5);
  EXPECT_GT(report.prior_bpd, 0.0);
  EXPECT_LT(report.prior_bpd, 1e-2);
  EXPECT_GT(report.total_bpd, 1.0);  // uniform noise images cost bits under any model
}

// A stop request (SIGTERM) ends sampling and the bound evaluation within a model call, as StopRequested, on every
// rank together (the evaluation's reduction carries it); nothing is returned as if complete.
TEST_F(TrainerTest, StopRequestEndsSamplingAndEvaluation) {
  const ddpm::Config config = smoke("stop_eval", 4);
  ddpm::LoadedModel fresh = ddpm::load_model(config, "", /*allow_fresh=*/true, torch::kCPU);
  const ddpm::GaussianDiffusion diffusion = ddpm::make_diffusion(config);
  const torch::Tensor images = torch::rand({4, 1, 28, 28}).mul(2).sub(1);
  const ddpm::StopSignal stop;
  std::raise(SIGTERM);
  const auto started = std::chrono::steady_clock::now();
  EXPECT_THROW(ddpm::sample_images(fresh.model, diffusion, 3, 7, 2, torch::kCPU), ddpm::StopRequested);
  try {
    ddpm::evaluate_bound(fresh.model, diffusion, images, 2, true, 0, ddpm_test::mpi(), torch::kCPU, "the evaluation here");
    ADD_FAILURE() << "the evaluation ran to its end after a stop request";
  } catch (const ddpm::StopRequested& e) {
    EXPECT_STREQ(e.what(), "the evaluation here");
  }
  // 30 model calls per batch for each: stopping at the first call takes well under their time.
  EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count(), 5.0);
}

TEST_F(TrainerTest, FreshModelIsUsedForEvalOnlyWhenAllowed) {
  const ddpm::Config config = smoke("empty", 4);
  EXPECT_EQ(ddpm::resolve_checkpoint(config, ""), "");
  EXPECT_THROW(ddpm::load_model(config, "", /*allow_fresh=*/false, torch::kCPU), std::runtime_error);
  const ddpm::LoadedModel fresh = ddpm::load_model(config, "", /*allow_fresh=*/true, torch::kCPU);
  EXPECT_NE(fresh.source.find("freshly initialized"), std::string::npos);
}

// The speed options change how the step computes, not what it learns: bf16 autocast tracks float32's loss
// curve (the check, on the smoke config), channels-last and the per-tensor Adam match it closely.
TEST_F(TrainerTest, SpeedOptionsTrackTheFloat32LossCurve) {
  const auto losses = [&](const std::string& run, const std::vector<std::string>& sets) {
    ddpm::Config config = ddpm::load_config((fs::path(DDPM_SOURCE_DIR) / "configs" / "smoke.yaml").string(), [&] {
      std::vector<std::string> all = {"run.dir=" + (root_ / run).string(), "train.steps=40", "train.log_every=4",
                                      "train.checkpoint_every=40", "monitoring.eval_every=0"};
      all.insert(all.end(), sets.begin(), sets.end());
      return all;
    }());
    train(config);
    std::ifstream log(root_ / run / "train_log.jsonl");
    std::vector<double> out;
    for (std::string line; std::getline(log, line);) out.push_back(nlohmann::json::parse(line)["loss"].get<double>());
    return out;
  };
  const std::vector<double> fp32 = losses("fp32", {"train.precision=fp32"});
  const std::vector<double> bf16 = losses("bf16", {"train.precision=bf16"});
  const std::vector<double> nhwc = losses("nhwc", {"train.channels_last=true"});
  const std::vector<double> loop = losses("loop", {"train.fused_adam=false"});
  ASSERT_EQ(fp32.size(), 10u);
  ASSERT_EQ(bf16.size(), fp32.size());
  ASSERT_EQ(nhwc.size(), fp32.size());
  ASSERT_EQ(loop.size(), fp32.size());
  EXPECT_LT(fp32.back(), 0.5 * fp32.front());  // it learns
  for (size_t i = 0; i < fp32.size(); ++i) {
    // bf16 keeps 8 bits of mantissa: a few percent on the loss, while the curve itself falls by half or more.
    EXPECT_NEAR(bf16[i], fp32[i], 0.05 * fp32[i] + 0.01) << "log line " << i;
    EXPECT_NEAR(nhwc[i], fp32[i], 0.01 * fp32[i]) << "log line " << i;
    EXPECT_NEAR(loop[i], fp32[i], 0.01 * fp32[i]) << "log line " << i;
  }
}

}  // namespace
