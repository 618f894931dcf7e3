// ddpm: the command line. Thin on purpose: parse, call into the libraries, and be the one place where
// errors are caught, printed and turned into an exit code.
#include <CLI/CLI.hpp>
#include <sched.h>
#include <unistd.h>

#include <cstdlib>

#include <filesystem>
#include <optional>
#include <fstream>
#include <iostream>
#include <string>
#include <vector>

#include "data/dataset_spec.h"
#include "data/pixels.h"
#include "distributed/abort.h"
#include "distributed/communicator.h"
#include "distributed/mpi_context.h"
#include "trainer/tools/bench.h"
#include "trainer/config/builders.h"
#include "distributed/console.h"
#include "trainer/config/config.h"
#include "trainer/eval/image_grid.h"
#include "trainer/checkpoint/atomic_file.h"
#include "trainer/diffusion/respace.h"
#include "trainer/eval/inference.h"
#include "trainer/monitoring/progress.h"
#include "trainer/sampling/sample_job.h"
#include "distributed/stop_signal.h"
#include "trainer/loop/trainer.h"
#include "trainer/cli/config_options.h"
#include "trainer/cli/fid_command.h"
#include "trainer/cli/interop_command.h"

namespace {

namespace fs = std::filesystem;
constexpr int kExitError = 1;

using ddpm::add_config_options;
using ddpm::ConfigArgs;

std::string build_info() {
  std::string info = "ddpm 0.1.0 (LibTorch " TORCH_VERSION ", ";
  info += ddpm::nccl_available() ? "CUDA + NCCL backend compiled" : "CPU only: no NCCL backend";
  return info + ")";
}

// An integer option of at least `minimum`, with a message in words (CLI11's own ranges print 300-digit bounds,
// and an unsigned option would silently wrap "-1").
CLI::Validator at_least(int64_t minimum) {
  return CLI::Validator(
      [minimum](std::string& text) -> std::string {
        size_t used = 0;
        long long value = 0;
        try {
          value = std::stoll(text, &used);
        } catch (const std::exception&) {
          used = 0;
        }
        if (used == 0 || used != text.size()) return "must be an integer, got '" + text + "'";
        if (value < minimum) return "must be at least " + std::to_string(minimum) + ", got " + text;
        return "";
      },
      ">=" + std::to_string(minimum));
}

// Fails before hours of work when the result could not be written.
void check_writable(const std::string& output) {
  const fs::path parent = fs::absolute(output).parent_path();
  if (!fs::is_directory(parent)) throw std::runtime_error("cannot write " + output + ": no directory " + parent.string());
  if (::access(parent.c_str(), W_OK) != 0) throw std::runtime_error("cannot write " + output + ": " + parent.string() + " is not writable");
  if (fs::is_directory(output)) throw std::runtime_error("cannot write " + output + ": it is a directory");
}

// One intra-op thread pool per rank over the cores this process may use, split among the node's ranks
// (and leaving room for a data loader thread). OMP_NUM_THREADS, when set, wins.
void share_cores(const ddpm::MpiContext& mpi) {
  if (std::getenv("OMP_NUM_THREADS") != nullptr) return;
  cpu_set_t set;
  CPU_ZERO(&set);
  const int cores = sched_getaffinity(0, sizeof(set), &set) == 0 ? CPU_COUNT(&set) : 1;
  torch::set_num_threads(std::max(1, cores / std::max(1, mpi.local_size())));
}

int run_config(const ConfigArgs& args, bool keys) {
  if (keys) {
    std::cout << ddpm::describe_keys();
    return 0;
  }
  const ddpm::Config config = ddpm::load_config(args.path, args.overrides);
  std::cout << "# resolved config of " << args.path << "\n" << ddpm::to_yaml(config);
  return 0;
}

int run_train(const ConfigArgs& args, const std::string& progress, bool sync_check, const ddpm::MpiContext& mpi) {
  const ddpm::Config config = ddpm::load_config(args.path, args.overrides);
  if (mpi.rank() == 0) std::cout << "# resolved config of " << args.path << "\n" << ddpm::to_yaml(config) << std::flush;
  const torch::Device device = ddpm::select_device(config, mpi.local_rank());
  std::cout << "rank " << mpi.rank() << "/" << mpi.world_size() << " (local " << mpi.local_rank() << ") on "
            << mpi.hostname() << ": " << device.str() << std::endl;
  ddpm::TrainerOptions options;
  options.progress = ddpm::parse_progress_mode(progress);
  options.sync_check = sync_check;
  ddpm::Trainer trainer(config, mpi, device, options);
  if (mpi.rank() == 0) {
    std::cout << "run directory " << config.run.dir << ": " << trainer.start_description() << ", training to step "
              << config.train.steps << std::endl;
  }
  trainer.train();
  if (trainer.stopped_by_signal()) return ddpm::kExitStopped;
  if (mpi.rank() == 0) std::cout << "done: step " << trainer.step() << ", checkpoints in " << config.run.dir << std::endl;
  return 0;
}

// The signal this rank received, or, when the stop reached it from another rank, that.
std::string stop_cause() {
  const std::string name = ddpm::StopSignal::name();
  return name.empty() ? "another rank's stop request" : name;
}

struct SampleArgs {
  std::string checkpoint, output, png_dir, steps, sampler = "ancestral", progress = "auto";
  uint64_t seed = 0;
  int64_t count = 64;
  int64_t batch = 0;
  double eta = 0.0;
  bool no_clip = false;
};

bool ends_with(const std::string& text, const std::string& suffix) {
  return text.size() >= suffix.size() && text.compare(text.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// The diffusion to sample or evaluate with: the config's, respaced by --steps.
ddpm::GaussianDiffusion respaced_diffusion(const ddpm::Config& config, const std::string& steps, const torch::Device& device) {
  try {
    return ddpm::respace(ddpm::make_diffusion(config), steps).to(device);
  } catch (const std::invalid_argument& e) {
    throw std::runtime_error("--steps: " + std::string(e.what()));
  }
}

int run_sample(const ConfigArgs& args, const SampleArgs& sample, bool eta_given, const ddpm::MpiContext& mpi) {
  const ddpm::Config config = ddpm::load_config(args.path, args.overrides);
  if (!sample.output.empty() && mpi.rank() == 0) check_writable(sample.output);
  ddpm::SampleJob job;
  if (ends_with(sample.output, ".npz")) {
    job.npz_output = sample.output;
  } else if (ends_with(sample.output, ".png")) {
    job.grid_output = sample.output;
  } else if (!sample.output.empty()) {
    throw std::runtime_error("--output " + sample.output + ": expected an .npz (all images) or a .png (a grid)");
  }
  job.png_dir = sample.png_dir;
  job.num_images = sample.count;
  job.seed = sample.seed;
  // Up to 256 images a batch by default: sampling is T forward passes per batch, so fewer, larger batches win.
  job.batch_size = sample.batch > 0 ? sample.batch : std::min<int64_t>(sample.count, 256);
  job.steps = sample.steps;
  job.progress = ddpm::parse_progress_mode(sample.progress);
  job.sampler = ddpm::sampler_options(config);
  job.sampler.kind = ddpm::parse_sampler_kind(sample.sampler);
  job.sampler.eta = sample.eta;
  job.sampler.clip_denoised = !sample.no_clip;
  if (eta_given && job.sampler.kind != ddpm::SamplerKind::kDdim) {
    throw std::runtime_error("--eta is DDIM's: add --sampler ddim (ancestral sampling has no eta)");
  }
  const torch::Device device = ddpm::select_device(config, mpi.local_rank());
  // Rank 0 picks the file, so that every rank samples from the same weights even if training writes meanwhile.
  const std::string checkpoint =
      mpi.broadcast_string(mpi.rank() == 0 ? ddpm::resolve_checkpoint(config, sample.checkpoint) : std::string());
  ddpm::LoadedModel loaded = ddpm::load_model(config, checkpoint, /*allow_fresh=*/false, device);
  const ddpm::GaussianDiffusion diffusion = respaced_diffusion(config, sample.steps, device);
  if (mpi.rank() == 0) std::cout << "model: " << loaded.source << std::endl;
  const ddpm::SampleSource source{loaded.source, ddpm::weights_crc(loaded.model), device.is_cuda() ? "cuda" : "cpu",
                                  ddpm::model_shape_signature(config)};
  const ddpm::SampleJobResult result = ddpm::run_sample_job(job, source, loaded.model, diffusion, mpi, device);
  if (result.stopped) {
    if (mpi.rank() == 0) {
      ddpm::print_line("ddpm: sampling stopped on " + stop_cause() + ": " + std::to_string(result.shards_done) +
                       " of " + std::to_string(result.shards) + " shards done, kept in " + result.work_dir.string() +
                       "; the same command resumes there. No output written yet");
    }
    return ddpm::kExitStopped;
  }
  if (mpi.rank() == 0) {
    for (const std::string& path : {job.npz_output, job.grid_output}) {
      if (!path.empty()) std::cout << "wrote " << path << std::endl;
    }
    if (!job.png_dir.empty()) std::cout << "wrote " << job.num_images << " images to " << job.png_dir << std::endl;
  }
  return 0;
}

struct EvalArgs {
  std::string checkpoint, output, steps, progress = "auto";
  int64_t count = 0;
  bool no_clip = false;
};

int run_eval(const ConfigArgs& args, const EvalArgs& eval, const ddpm::MpiContext& mpi) {
  const ddpm::Config config = ddpm::load_config(args.path, args.overrides);
  if (mpi.rank() == 0) check_writable(eval.output);
  const ddpm::ProgressMode progress_mode = ddpm::parse_progress_mode(eval.progress);
  const torch::Device device = ddpm::select_device(config, mpi.local_rank());
  // Rank 0 picks the file, so that every rank evaluates the same weights even if training writes meanwhile.
  const std::string checkpoint =
      mpi.broadcast_string(mpi.rank() == 0 ? ddpm::resolve_checkpoint(config, eval.checkpoint) : std::string());
  ddpm::LoadedModel loaded = ddpm::load_model(config, checkpoint, /*allow_fresh=*/true, device);
  const ddpm::ImageDataset test = ddpm::load_dataset(ddpm::dataset_spec(config, ddpm::DataSplit::kTest));
  const int64_t count = eval.count > 0 ? std::min(eval.count, test.size()) : test.size();
  const ddpm::GaussianDiffusion diffusion = respaced_diffusion(config, eval.steps, device);
  if (mpi.rank() == 0) {
    std::cout << "evaluating the full bound (" << diffusion.num_timesteps() << " terms per image"
              << (diffusion.respaced() ? ", respaced from " + std::to_string(diffusion.original_num_timesteps()) : "")
              << ") of " << loaded.source << " on " << count << " test images of " << test.source << ", "
              << mpi.world_size() << " rank(s)" << std::endl;
  }
  const torch::Tensor images = ddpm::pixels_to_model_range(test.images.slice(0, 0, count));
  // Rank 0 draws the line from its own share (images 0, W, 2W, ...): the ranks' shares differ by one image at most.
  const int64_t own = (count + mpi.world_size() - 1) / mpi.world_size();
  std::optional<ddpm::TaskProgress> progress;
  if (mpi.rank() == 0) progress.emplace(progress_mode, "evaluating", static_cast<double>(count), "images");
  const auto on_progress = [&](double done) {
    if (progress) progress->update(done * static_cast<double>(count) / static_cast<double>(own));
  };
  if (progress) progress->update(0.0);
  const ddpm::BoundReport report = ddpm::evaluate_bound(loaded.model, diffusion, images, config.train.batch_size,
                                                        !eval.no_clip, config.run.seed, mpi, device,
                                                        "the bound evaluation", on_progress);
  if (progress) progress->finish();
  if (mpi.rank() == 0) {
    ddpm::write_text_atomically(eval.output, ddpm::bound_report_json(report, loaded.source, diffusion, eval.steps));
    std::printf("bits/dim %.4f = L_T %.2e + sum L_{t-1} %.4f + L_0 %.4f   eps-MSE %.4f   (%lld images, %lld steps)\nwrote %s\n",
                report.total_bpd, report.prior_bpd, report.vb_sum_bpd, report.decoder_bpd, report.mse,
                static_cast<long long>(report.images), static_cast<long long>(diffusion.num_timesteps()),
                eval.output.c_str());
  }
  return 0;
}

struct BenchArgs {
  ddpm::BenchOptions options;
  std::string output;
};

int run_bench(const ConfigArgs& args, const BenchArgs& bench, const ddpm::MpiContext& mpi) {
  const ddpm::Config config = ddpm::load_config(args.path, args.overrides);
  if (mpi.rank() == 0 && !bench.output.empty()) check_writable(bench.output);
  if (!bench.options.trace.empty()) {
    if (bench.options.profile_steps == 0) throw std::runtime_error("--trace needs --profile-steps N (N > 0): the steps to trace");
    check_writable(bench.options.trace);
  }
  const torch::Device device = ddpm::select_device(config, mpi.local_rank());
  if (mpi.rank() == 0) {
    std::cout << "benchmark of " << args.path << " on " << mpi.world_size() << " rank(s), " << device.str() << ": "
              << bench.options.warmup << " warm-up steps, " << bench.options.steps << " timed steps of batch "
              << config.train.batch_size << " per rank (" << ddpm::choice_name(config.train.precision)
              << (config.train.channels_last ? ", channels-last" : "") << (config.train.fused_adam ? ", fused Adam" : "")
              << ")" << std::endl;
  }
  const std::string report = ddpm::run_bench(config, mpi, device, bench.options);
  if (mpi.rank() == 0) {
    std::cout << report << std::endl;
    if (!bench.output.empty()) {
      std::ofstream out(bench.output);
      out << report << "\n";
      if (!out) throw std::runtime_error("cannot write " + bench.output);
    }
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"ddpm: train denoising diffusion probabilistic models (Ho et al. 2020), data-parallel over MPI/NCCL"};
  app.require_subcommand(1);
  app.set_version_flag("--version", build_info());

  ConfigArgs config_args;
  CLI::App* config_cmd = app.add_subcommand("config", "Print the resolved config (file + --set overrides), checked");
  CLI::Option* config_file = add_config_options(*config_cmd, config_args, /*required=*/false);
  bool keys = false;
  config_cmd->add_flag("--keys", keys, "List every config key with its type, default and meaning")->excludes(config_file);
  config_cmd->callback([&] {
    if (!keys && config_args.path.empty()) throw CLI::RequiredError("--config");
  });

  ConfigArgs train_args;
  std::string progress = "auto";
  CLI::App* train_cmd = app.add_subcommand("train", "Train a model (under mpirun: data-parallel on every rank)");
  add_config_options(*train_cmd, train_args);
  train_cmd->add_option("--progress", progress, "auto (bar on a terminal), bar, or plain lines")
      ->check(CLI::IsMember({"auto", "bar", "plain"}));
  bool sync_check = false;
  train_cmd->add_flag("--sync-check", sync_check,
                      "GPU: fail at any CUDA call that makes the host wait for the device inside a training step");

  ConfigArgs sample_args;
  SampleArgs sample;
  CLI::App* sample_cmd = app.add_subcommand(
      "sample", "Sample from the EMA weights (ancestral or DDIM, all or respaced steps) into an .npz, PNGs or a grid");
  add_config_options(*sample_cmd, sample_args);
  sample_cmd->add_option("--checkpoint", sample.checkpoint, "Checkpoint file (default: newest in run.dir)");
  sample_cmd->add_option("--seed", sample.seed, "Sampling seed: image i depends on (seed, i) only")->check(at_least(0));
  sample_cmd->add_option("--num-images", sample.count, "Number of images")->check(at_least(1));
  sample_cmd->add_option("--output", sample.output,
                         "samples.npz (arr_0, uint8 NxHxWxC, as guided-diffusion's evaluator reads) or grid.png");
  sample_cmd->add_option("--png-dir,--individual-dir", sample.png_dir, "Also write each image as DIR/<index>.png");
  sample_cmd->add_option("--sampler", sample.sampler, "ancestral (Algorithm 2) or ddim (Song et al. 2021)")
      ->check(CLI::IsMember({"ancestral", "ddim"}));
  sample_cmd->add_option("--steps", sample.steps,
                         "Respacing: N (evenly strided), N,N,... (sections), ddimN (DDIM's integer stride); default all T");
  CLI::Option* eta_option =
      sample_cmd->add_option("--eta", sample.eta, "DDIM's eta: 0 deterministic (default), 1 ancestral-like")
          ->check(CLI::Range(0.0, 1e6));
  sample_cmd->add_option("--batch-size", sample.batch, "Images per batch (default: min(num-images, 256))")->check(at_least(1));
  sample_cmd->add_flag("--no-clip", sample.no_clip, "Do not clip the x_0 prediction to [-1, 1] in each step");
  sample_cmd->add_option("--progress", sample.progress, "auto (bar on a terminal), bar, or plain lines")
      ->check(CLI::IsMember({"auto", "bar", "plain"}));
  sample_cmd->callback([&] {
    if (sample.output.empty() && sample.png_dir.empty()) throw CLI::RequiredError("--output or --png-dir");
  });

  ConfigArgs eval_args;
  EvalArgs eval;
  CLI::App* eval_cmd = app.add_subcommand("eval", "Full variational bound (bits/dim) on the test split");
  add_config_options(*eval_cmd, eval_args);
  eval_cmd->add_option("--checkpoint", eval.checkpoint, "Checkpoint file (default: newest in run.dir, else a fresh model)");
  eval_cmd->add_option("--num-images", eval.count, "Limit on the number of test images (0: all)")->check(at_least(0));
  eval_cmd->add_option("--output", eval.output, "JSON report to write")->required();
  eval_cmd->add_flag("--no-clip", eval.no_clip, "Do not clip the x_0 prediction to [-1, 1] before the posterior mean");
  eval_cmd->add_option("--steps", eval.steps, "The bound of the respaced process (as ddpm sample --steps); default all T");
  eval_cmd->add_option("--progress", eval.progress, "auto (bar on a terminal), bar, or plain lines")
      ->check(CLI::IsMember({"auto", "bar", "plain"}));

  ConfigArgs bench_args;
  BenchArgs bench;
  CLI::App* bench_cmd = app.add_subcommand("bench", "Time the training step (and sampling): images/s, phases, memory, MFU");
  add_config_options(*bench_cmd, bench_args);
  bench_cmd->add_option("--warmup", bench.options.warmup, "Steps before timing")->check(at_least(0));
  bench_cmd->add_option("--steps", bench.options.steps, "Steps timed")->check(at_least(1));
  bench_cmd->add_option("--sample-batch", bench.options.sample_batch, "Images sampled in one batch (0: no sampling run)")
      ->check(at_least(0));
  bench_cmd->add_option("--sample-steps", bench.options.sample_steps, "Sampling steps (0: diffusion.timesteps)")
      ->check(at_least(0));
  bench_cmd->add_option("--output", bench.output, "Also write the JSON report here");
  bench_cmd->add_option("--profile-steps", bench.options.profile_steps,
                        "Then profile this many steps (and sampling steps): busy time, kernels/operators by self time")
      ->check(at_least(0));
  bench_cmd->add_option("--trace", bench.options.trace, "With --profile-steps: write the training steps' trace here (Chrome format)");

  ddpm::FidArgs fid_args;
  CLI::App* fid_cmd = ddpm::add_fid_command(app, fid_args);

  ddpm::ExportArgs export_args;
  CLI::App* export_cmd = ddpm::add_export_command(app, export_args);
  ddpm::ImportArgs import_args;
  CLI::App* import_cmd = ddpm::add_import_command(app, import_args);

  // CLI11 only says "A subcommand is required" for a mistyped one: name it.
  const auto is_subcommand = [&app](const std::string& name) {
    for (const CLI::App* command : app.get_subcommands({})) {
      if (command->get_name() == name) return true;
    }
    return false;
  };
  if (argc > 1 && argv[1][0] != '-' && !is_subcommand(argv[1])) {
    ddpm::print_line("ddpm: error: unknown subcommand '" + std::string(argv[1]) +
                     "' (expected config, train, sample, eval, bench, fid, export or import; see ddpm --help)");
    return kExitError;
  }
  CLI11_PARSE(app, argc, argv);

  // One process each, no MPI: they read and write files only.
  if (config_cmd->parsed() || export_cmd->parsed() || import_cmd->parsed()) {
    try {
      if (export_cmd->parsed()) return ddpm::run_export(export_args);
      if (import_cmd->parsed()) return ddpm::run_import(import_args);
      return run_config(config_args, keys);
    } catch (const std::exception& e) {
      ddpm::print_line("ddpm: error: " + std::string(e.what()));
      return kExitError;
    }
  }
  std::unique_ptr<ddpm::MpiContext> mpi;
  try {
    mpi = std::make_unique<ddpm::MpiContext>(&argc, &argv);
    share_cores(*mpi);
    // SIGTERM / SIGINT: training finishes its step and checkpoints; sampling and evaluation stop within a model call
    // and write nothing; each exits kExitStopped then. The benchmark keeps the default actions (it has nothing to keep).
    std::optional<ddpm::StopSignal> stop_signal;
    if (!bench_cmd->parsed()) stop_signal.emplace();
    if (train_cmd->parsed()) return run_train(train_args, progress, sync_check, *mpi);
    if (sample_cmd->parsed()) return run_sample(sample_args, sample, eta_option->count() > 0, *mpi);
    if (eval_cmd->parsed()) return run_eval(eval_args, eval, *mpi);
    if (bench_cmd->parsed()) return run_bench(bench_args, bench, *mpi);
    if (fid_cmd->parsed()) return ddpm::run_fid(fid_args, *mpi);
  } catch (const ddpm::StopRequested& stopped) {
    // Every rank throws it together (the evaluation agrees on it), so no rank is left waiting.
    if (!mpi || mpi->rank() == 0) {
      ddpm::print_line("ddpm: " + std::string(stopped.what()) + " stopped on " + stop_cause() +
                       ": nothing written");
    }
    return ddpm::kExitStopped;
  } catch (const std::exception& e) {
    const bool several = mpi && mpi->world_size() > 1;
    ddpm::print_line("ddpm: error" + (several ? " (" + mpi->where() + ")" : std::string()) + ": " + e.what());
    // A rank that fails alone must not leave the others waiting in a collective.
    if (several) ddpm::abort_job_everywhere(*mpi, kExitError, ddpm::kAbortFallbackSeconds);
    return kExitError;
  }
  return 0;
}
