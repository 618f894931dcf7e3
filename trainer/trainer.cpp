#include "trainer/trainer.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <limits>
#include <sstream>
#include <thread>

#include "data/dataset_spec.h"
#include "data/splitmix64.h"
#include "trainer/atomic_file.h"
#include "trainer/builders.h"
#include "trainer/autocast.h"
#include "trainer/console.h"
#include "trainer/keyed_noise.h"
#include "trainer/stop_signal.h"
#include "distributed/sync_check.h"
#ifdef DDPM_WITH_CUDA
#include <ATen/cuda/CUDAGeneratorImpl.h>
#endif

namespace ddpm {
namespace fs = std::filesystem;
namespace {

// This rank's generators (CPU always; the device's when on CUDA), as one byte string.
std::vector<at::Generator> rank_generators(const torch::Device& device) {
  std::vector<at::Generator> generators = {at::detail::getDefaultCPUGenerator()};
#ifdef DDPM_WITH_CUDA
  if (device.is_cuda()) generators.push_back(at::cuda::detail::getDefaultCUDAGenerator(device.index()));
#endif
  return generators;
}

torch::Tensor bytes_tensor(const std::string& bytes) {
  torch::Tensor t = torch::empty({static_cast<int64_t>(bytes.size())}, torch::kUInt8);
  std::memcpy(t.data_ptr(), bytes.data(), bytes.size());
  return t;
}

std::string tensor_bytes(const torch::Tensor& t) {
  const torch::Tensor c = t.contiguous().to(torch::kCPU);
  return std::string(static_cast<const char*>(c.data_ptr()), static_cast<size_t>(c.numel()));
}

// "model.channels 32 in the checkpoint, 64 in the config; ..." for the lines of two signatures that differ.
std::string shape_differences(const std::string& saved, const std::string& current) {
  std::istringstream a(saved), b(current);
  std::string line_a, line_b, out;
  if (std::count(saved.begin(), saved.end(), '\n') != std::count(current.begin(), current.end(), '\n')) {
    return "the checkpoint was written by a build with another shape description";
  }
  while (std::getline(a, line_a) && std::getline(b, line_b)) {
    if (line_a == line_b) continue;
    const size_t colon = line_a.find(": ");
    out += (out.empty() ? "" : "; ") + line_a.substr(0, colon) + " " + line_a.substr(colon + 2) + " in the checkpoint, " +
           line_b.substr(line_b.find(": ") + 2) + " in the config";
  }
  return out;
}

}  // namespace

void seed_rank_generators(uint64_t seed, int rank) {
  // Distinct, reproducible streams per rank; torch::manual_seed seeds CPU and every CUDA device.
  torch::manual_seed(seed * 1000003ULL + static_cast<uint64_t>(rank));
}

Trainer::Trainer(const Config& config, const MpiContext& mpi, const torch::Device& device, TrainerOptions options)
    : config_(config),
      mpi_(mpi),
      device_(device),
      options_(options),
      comm_(make_communicator(mpi, parse_comm_backend(config.distributed.backend), device)),
      peer_status_(std::make_unique<PeerStatus>(mpi)),
      watchdog_(std::make_unique<Watchdog>(
          config.distributed.timeout_seconds, [this](const std::string& what, double s) { abort_job(what, s); },
          [this](const std::string& doing) { peer_status_->answer_questions(doing); })),
      faults_(FaultInjector::from_environment(mpi.rank())),
      diffusion_(make_diffusion(config).to(device)),
      model_(nullptr),
      step_flags_(device),
      ema_(torch::nn::Module(), {}) {
  check_config_matches_rank0();
  if (options_.sync_check) require_sync_check_device(device_);
  if (config_.train.cuda_graph) check_graph_capturable();
  seed_rank_generators(config_.run.seed, mpi_.rank());
  // The model is built from the same seed on every rank, then rank 0's weights are broadcast anyway.
  torch::manual_seed(config_.run.seed);
  model_ = UNet(unet_options(config_));
  model_->to(device_);
  if (config_.train.channels_last) use_channels_last(model_);
  seed_rank_generators(config_.run.seed, mpi_.rank());
  for (const torch::Tensor& p : model_->parameters()) parameters_.push_back(p);
  std::vector<std::string> names;
  for (const auto& item : model_->named_parameters()) names.push_back(item.key());
  AdamOptions adam;
  adam.fused = config_.train.fused_adam;
  optimizer_ = std::make_unique<Adam>(parameters_, names, adam);
  ema_ = ExponentialMovingAverage(*model_, config_.train.ema_rates);

  // Every rank opens the data set itself (it must exist on every node) and fails up front on bad files.
  std::string data_error;
  try {
    dataset_ = std::make_shared<const ImageDataset>(load_dataset(dataset_spec(config_, config_.data.split)));
  } catch (const std::exception& e) {
    data_error = e.what();
  }
  if (!mpi_.all_ok(data_error.empty())) {
    throw std::runtime_error(data_error.empty() ? "another rank failed to open the data set" : data_error);
  }
  resume_or_start();
  broadcast_parameters();
  monitor_ = std::make_unique<TrainingMonitor>(config_, mpi_, diffusion_, device_);
  // One rank has nothing to all-reduce; distributed.always_reduce runs the path anyway, to measure what it costs
  // and to check that it leaves the weights exactly as no communication would.
  if (mpi_.world_size() > 1 || config_.distributed.always_reduce) {
    if (comm_->backend() == CommBackend::kMpi && mpi_.thread_level() < MPI_THREAD_SERIALIZED) {
      throw std::runtime_error("this MPI library provides thread level " + std::to_string(mpi_.thread_level()) +
                               "; the MPI backend reduces gradient buckets from a communication thread and needs at "
                               "least MPI_THREAD_SERIALIZED");
    }
    constexpr double kMiB = 1024.0 * 1024.0;
    synchronizer_ = std::make_unique<GradientSynchronizer>(
        parameters_, *comm_, static_cast<int64_t>(config_.distributed.bucket_mb * kMiB),
        static_cast<int64_t>(config_.distributed.first_bucket_mb * kMiB));
  }
  if (config_.train.cuda_graph) step_graph_ = std::make_unique<StepGraph>(device_);
}

namespace {

// "train.lr: 0.002 here, 0.001 on rank 0; ..." for the keys whose lines differ in two resolved configs (to_yaml:
// unindented section lines, indented "key: value" lines).
std::string config_differences(const std::string& mine, const std::string& theirs) {
  std::istringstream a(mine), b(theirs);
  std::string line_a, line_b, section, out;
  while (std::getline(a, line_a) && std::getline(b, line_b)) {
    if (!line_a.empty() && line_a[0] != ' ') section = line_a.substr(0, line_a.find(':'));
    if (line_a == line_b) continue;
    const auto trimmed = [](const std::string& line) { return line.substr(line.find_first_not_of(' ')); };
    const std::string key = trimmed(line_a).substr(0, trimmed(line_a).find(':'));
    const auto value = [](const std::string& line) { return line.substr(line.find(':') + 1); };
    out += (out.empty() ? "" : "; ") + section + "." + key + ":" + value(line_a) + " here," + value(line_b) + " on rank 0";
  }
  return out;
}

}  // namespace

void Trainer::check_config_matches_rank0() const {
  if (mpi_.world_size() == 1) return;
  const std::string mine = to_yaml(config_);
  const std::string rank0 = mpi_.broadcast_string(mine);
  const bool same = mine == rank0;
  if (!mpi_.all_ok(same)) {
    throw std::runtime_error(same ? "another rank's resolved config differs from rank 0's (see its message)"
                                  : "rank " + std::to_string(mpi_.rank()) + "'s resolved config differs from rank 0's (" +
                                        config_differences(mine, rank0) +
                                        "): every rank must be started with the same config and --set arguments");
  }
}

void Trainer::abort_job(const std::string& what, double seconds) const {
  const std::string prefix = "ddpm: error (rank " + std::to_string(mpi_.rank()) + "): ";
  std::ostringstream seconds_text;
  seconds_text << seconds;
  print_line(prefix + what + " has not completed after " + seconds_text.str() +
             " s: another rank is dead or hung (distributed.timeout_seconds); asking the other ranks");
  // A few seconds, and never more than a quarter of the timeout, for the live ranks to answer.
  const double grace = std::clamp(config_.distributed.timeout_seconds / 4.0, 1.0, 5.0);
  const std::string diagnosis = peer_status_->diagnose(what, PeerStatus::waiting(what, seconds), grace);
  if (!diagnosis.empty()) print_line(prefix + diagnosis);
  print_line(prefix + "aborting the job");
  comm_->abort();
  MPI_Abort(MPI_COMM_WORLD, 1);
  std::_Exit(1);
}

void Trainer::resume_or_start() {
  const fs::path dir = config_.run.dir;
  std::string error;
  std::string chosen;
  std::optional<Checkpoint> newest;
  if (mpi_.rank() == 0) {
    try {
      fs::create_directories(dir);
      remove_interrupted_writes(dir);  // this process owns the directory; nothing else writes there now
      std::vector<std::string> warnings;
      fs::path path;
      newest = load_newest_valid_checkpoint(dir, &warnings, &path);
      for (const std::string& w : warnings) print_line("ddpm: warning: " + w);
      if (newest) {
        chosen = path.string();
      } else if (!list_checkpoints(dir).empty()) {
        // Starting from scratch here would bury the old run under new checkpoints: refuse.
        error = "run directory " + dir.string() + " holds checkpoints, but none verifies (see the warnings " +
                "above); move them away or choose another run.dir";
      }
    } catch (const std::exception& e) {
      error = "run directory " + dir.string() + ": " + e.what();
    }
  }
  error = mpi_.broadcast_string(error);
  if (!error.empty()) throw std::runtime_error(error);
  chosen = mpi_.broadcast_string(chosen);
  if (!chosen.empty()) {
    // Every rank loads the same file before any collective of training: a rank that fails makes all fail.
    std::string load_error;
    try {
      restore(newest ? *newest : read_checkpoint(chosen));
    } catch (const std::exception& e) {
      load_error = "resuming from " + chosen + ": " + e.what();
    }
    if (!mpi_.all_ok(load_error.empty())) {
      throw std::runtime_error(load_error.empty() ? "another rank failed to load " + chosen : load_error);
    }
  }
  start_description_ = chosen.empty() ? "from scratch" : "resumed at step " + std::to_string(step_) + " from " + chosen;
  // Only now, with the run directory known to be this run's, record the resolved config in it.
  if (mpi_.rank() == 0) write_text_atomically(dir / "config.yaml", to_yaml(config_));
}

void Trainer::restore(const Checkpoint& checkpoint) {
  const nlohmann::json meta = nlohmann::json::parse(checkpoint.metadata);
  const std::string saved_signature = meta.at("model_shape").get<std::string>();
  const std::string differences = shape_differences(saved_signature, model_shape_signature(config_));
  if (!differences.empty()) {
    throw std::runtime_error("run directory " + config_.run.dir + " holds checkpoints of another run (model or data shape " +
                             "differs: " + differences + "); choose another run.dir, or use that run's config");
  }
  const int64_t saved_world = meta.at("world_size").get<int64_t>();
  torch::NoGradGuard no_grad;
  for (auto& item : model_->named_parameters()) {
    const auto found = checkpoint.tensors.find("model/" + item.key());
    if (found == checkpoint.tensors.end()) throw std::runtime_error("the checkpoint has no tensor model/" + item.key());
    if (found->second.sizes() != item.value().sizes()) {
      throw std::runtime_error("model/" + item.key() + " has shape " + c10::str(found->second.sizes()) +
                               " in the checkpoint, the model has " + c10::str(item.value().sizes()));
    }
    item.value().copy_(found->second);
  }
  ema_.load_state(checkpoint.tensors);
  optimizer_->load_state(checkpoint.tensors);
  step_ = checkpoint.step;
  loader_state_.epoch = meta.at("loader").at("epoch").get<int64_t>();
  loader_state_.position = meta.at("loader").at("position").get<int64_t>();
  if (saved_world == mpi_.world_size()) {
    std::vector<at::Generator> generators = rank_generators(device_);
    for (size_t g = 0; g < generators.size(); ++g) {
      const std::string key = "rng/" + std::to_string(mpi_.rank()) + "/" + std::to_string(g);
      const auto found = checkpoint.tensors.find(key);
      if (found != checkpoint.tensors.end()) generators[g].set_state(found->second.contiguous());
    }
  } else if (mpi_.rank() == 0) {
    print_line("ddpm: warning: the checkpoint was written by " + std::to_string(saved_world) + " ranks, this job has " +
               std::to_string(mpi_.world_size()) + ": the run continues, but not bit-identically to an uninterrupted one");
  }
}

void Trainer::broadcast_parameters() {
  if (mpi_.world_size() == 1) return;
  torch::NoGradGuard no_grad;
  for (torch::Tensor& p : parameters_) {
    torch::Tensor data = p.data();
    comm_->broadcast(data, 0);
  }
}

double Trainer::learning_rate(int64_t step) const {
  const int64_t warmup = config_.train.warmup_steps;
  const double scale = warmup > 0 ? std::min(1.0, static_cast<double>(step + 1) / static_cast<double>(warmup)) : 1.0;
  return config_.train.lr * scale;
}

torch::Tensor Trainer::clip_gradients() {
  std::vector<torch::Tensor> grads;
  for (const torch::Tensor& p : parameters_) grads.push_back(p.grad());
  const torch::Tensor total = torch::stack(at::_foreach_norm(grads, 2.0)).norm();
  if (config_.train.grad_clip > 0) {
    // No host sync: the clip factor stays on the device.
    const torch::Tensor factor = (config_.train.grad_clip / (total + 1e-6)).clamp_max(1.0);
    at::_foreach_mul_(grads, factor);
  }
  return total;
}

Trainer::StepInputs Trainer::eager_inputs(const Batch& batch) const {
  StepInputs in;
  in.images = batch.images;
  in.indices = batch.indices.to(device_, torch::kLong, /*non_blocking=*/true);
  in.step = torch::full({}, step_, torch::TensorOptions().dtype(torch::kLong).device(device_));
  in.stop = torch::full({}, StopSignal::requested() ? 1.0f : 0.0f, torch::TensorOptions().device(device_));
  return in;
}

void Trainer::fill_graph_inputs(const Batch& batch) {
  StepInputs& in = graph_inputs_;
  const auto on_device = torch::TensorOptions().device(device_);
  if (!in.images.defined()) {
    in.images = torch::empty_like(batch.images, on_device.dtype(batch.images.scalar_type()));
    in.indices = torch::empty({batch.indices.size(0)}, on_device.dtype(torch::kLong));
    in.step = torch::zeros({}, on_device.dtype(torch::kLong));
    in.stop = torch::zeros({}, on_device.dtype(torch::kFloat32));
    // The CUDA kernels read a float32 learning rate; on a CPU the exact double (bit-identical to the ordinary step).
    in.lr = torch::zeros({}, on_device.dtype(device_.is_cuda() ? torch::kFloat32 : torch::kFloat64));
  }
  if (batch.images.sizes() != in.images.sizes()) {
    throw std::runtime_error("train.cuda_graph: the batch changed shape from " + c10::str(in.images.sizes()) + " to " +
                             c10::str(batch.images.sizes()) + " at step " + std::to_string(step_ + 1) +
                             "; a captured step needs the same shapes every step");
  }
  // Asynchronous fills and copies on the current stream, which the replay waits for.
  in.images.copy_(batch.images, /*non_blocking=*/true);
  in.indices.copy_(batch.indices, /*non_blocking=*/true);
  in.step.fill_(step_);
  in.stop.fill_(StopSignal::requested() ? 1.0 : 0.0);
  in.lr.fill_(learning_rate(step_));
}

Trainer::StepResult Trainer::train_step(const Batch& batch) {
  using Clock = std::chrono::steady_clock;
  const Clock::time_point start = Clock::now();
  if (timer_ != nullptr) timer_->start_step();
  StepOutputs out;
  StepClock clock;
  if (step_graph_ || options_.static_step_inputs) {
    fill_graph_inputs(batch);
    const auto enqueue = [this] { graph_outputs_ = enqueue_step(graph_inputs_, nullptr); };
    if (step_graph_) {
      step_graph_->run(enqueue);
    } else {
      enqueue();
    }
    out = graph_outputs_;
    if (timer_ != nullptr) timer_->mark(Phase::kCapturedStep);
    clock.backward_done = clock.synced = Clock::now();  // the host only queued: no split to report
  } else {
    out = enqueue_step(eager_inputs(batch), &clock);
  }
  ++step_;
  step_flags_.push(step_, out.flags);
  StepResult result{out.loss, out.grad_norm, account_flags(/*drain=*/false)};
  const Clock::time_point end = Clock::now();
  const auto seconds = [](Clock::time_point a, Clock::time_point b) { return std::chrono::duration<double>(b - a).count(); };
  monitor_->observe_phases(last_data_wait_, seconds(start, clock.backward_done), seconds(clock.backward_done, clock.synced),
                           seconds(clock.synced, end));
  return result;
}

Trainer::StepOutputs Trainer::enqueue_step(const StepInputs& inputs, StepClock* clock) {
  const auto mark = [this, clock](Phase phase) {
    if (timer_ != nullptr && clock != nullptr) timer_->mark(phase);
  };
  // t and ε of each example from (seed, step, data set index) alone: the same image gets the same draw whatever
  // the number of ranks, so N ranks with batch B train exactly like one rank with batch N·B.
  const KeyedDraws draws = keyed_timesteps_and_noise(config_.run.seed, inputs.step, inputs.indices,
                                                     inputs.images.sizes().slice(1), diffusion_.num_timesteps(),
                                                     inputs.images.scalar_type());
  const int64_t micro = config_.train.micro_batches;
  const int64_t chunk = inputs.images.size(0) / micro;
  const int64_t this_step = step_ + 1;  // for fault injection and messages only: a captured graph has no faults
  torch::Tensor images = inputs.images;
  if (faults_.active(FaultKind::kNanInput, this_step)) {
    images = images.clone();
    images.view({-1})[0].fill_(std::numeric_limits<float>::quiet_NaN());
  }
  const bool bf16 = config_.train.precision == "bf16";
  optimizer_->zero_grad();
  torch::Tensor loss_sum = torch::zeros({}, inputs.images.options());
  for (int64_t m = 0; m < micro; ++m) {
    const torch::Tensor x0 = images.narrow(0, m * chunk, chunk);
    const torch::Tensor t = draws.t.narrow(0, m * chunk, chunk);
    const torch::Tensor noise = draws.noise.narrow(0, m * chunk, chunk);
    torch::Tensor x_t = diffusion_.q_sample(x0, t, noise);  // eq. 4, Algorithm 1
    if (config_.train.channels_last) x_t = x_t.contiguous(torch::MemoryFormat::ChannelsLast);
    torch::Tensor eps;
    {
      const AutocastScope autocast(device_, bf16);
      eps = model_->forward(x_t, t);
    }
    eps = eps.to(torch::kFloat32);  // the loss and the bound terms in float32 whatever the precision
    const torch::Tensor per_example = config_.diffusion.loss == "kl"
                                          ? diffusion_.vb_terms_bpd(eps, x0, x_t, t, /*clip_denoised=*/false)
                                          : GaussianDiffusion::simple_loss(eps, noise);  // eq. 14
    torch::Tensor loss = per_example.mean() / static_cast<double>(micro);
    if (faults_.active(FaultKind::kNanLoss, this_step)) loss = loss + std::numeric_limits<double>::quiet_NaN();
    loss_sum += loss.detach();
    monitor_->observe_batch(eps, noise, x0, x_t, t);
    mark(Phase::kForward);
    // Gradients accumulate locally; only the last micro-batch's backward starts the all-reduce.
    if (synchronizer_ && m == micro - 1) synchronizer_->begin();
    loss.backward();
    mark(Phase::kBackward);
  }
  if (clock != nullptr) clock->backward_done = std::chrono::steady_clock::now();
  if (synchronizer_) {
    const Watchdog::Scope armed(*watchdog_, "the gradient all-reduce of step " + std::to_string(this_step));
    last_sync_ = synchronizer_->finish();
    monitor_->observe_sync(last_sync_);
  }
  if (clock != nullptr) clock->synced = std::chrono::steady_clock::now();
  mark(Phase::kCommunication);
  if (faults_.active(FaultKind::kNanGrad, this_step)) {
    torch::NoGradGuard no_grad;
    parameters_.front().grad().view({-1})[0].fill_(std::numeric_limits<float>::quiet_NaN());
  }
  const torch::Tensor grad_norm = clip_gradients();
  const torch::Tensor flags = agree(loss_sum, grad_norm, inputs.stop);
  // A non-finite loss or gradient on any rank: every rank skips the update, on the device (no host sync);
  // weights, EMA and optimizer state stay bitwise as they were.
  const torch::Tensor skip = (flags[0] > 0).to(torch::kFloat32);
  if (inputs.lr.defined()) {
    optimizer_->step(inputs.lr, skip);
  } else {
    optimizer_->step(learning_rate(step_), skip);
  }
  ema_.update(*model_, skip);
  mark(Phase::kOptimizer);
  return {loss_sum, grad_norm, flags};
}

torch::Tensor Trainer::agree(const torch::Tensor& loss, const torch::Tensor& grad_norm, const torch::Tensor& stop) {
  const torch::Tensor bad = torch::logical_not(torch::isfinite(loss) & torch::isfinite(grad_norm)).to(torch::kFloat32);
  torch::Tensor flags = torch::stack({bad, stop.to(torch::kFloat32)});
  if (mpi_.world_size() > 1) {
    // MPI reduces at once (CPU); NCCL only enqueues, and the host reads the result a step later.
    const Watchdog::Scope armed(*watchdog_, "the step agreement of step " + std::to_string(step_ + 1));
    comm_->all_reduce_sum(flags);
  }
  return flags;
}

void Trainer::check_graph_capturable() const {
  std::string why;
  if (mpi_.world_size() > 1 || config_.distributed.always_reduce) {
    why = "a captured step needs a single rank without distributed.always_reduce (world size " +
          std::to_string(mpi_.world_size()) + " here): the bucketed all-reduce is started by autograd hooks and " +
          "waited for by the host, which a graph cannot hold";
  } else if (!device_.is_cuda()) {
    why = "a captured step needs a CUDA device, and this run is on " + device_.str() + " (run.device)";
  } else if (faults_.injects_into_step()) {
    why = "DDPM_FAULT's NaN faults are decided on the host, step by step, and a captured step is the same every time";
  }
  if (!mpi_.all_ok(why.empty())) {
    throw std::runtime_error(why.empty() ? "another rank cannot capture its training step (see its message)"
                                         : config_.source + ": train.cuda_graph is true, but " + why);
  }
}

bool Trainer::account_flags(bool drain) {
  bool stop = false;
  const auto wait = [this](const std::function<bool()>& ready) {
    // Waiting for a step's flags waits for everything queued before them, the gradient buckets included.
    const Watchdog::Scope armed(*watchdog_, "the gradient all-reduce and step agreement of step " + std::to_string(step_ - 1));
    while (!ready()) {
      comm_->check_async_error();
      std::this_thread::sleep_for(std::chrono::microseconds(50));
    }
  };
  for (const StepFlags& flags : step_flags_.pop(drain, wait)) {
    stop = stop || flags.stop;
    if (!flags.nonfinite) {
      consecutive_skips_ = 0;
      continue;
    }
    ++skipped_steps_;
    monitor_->observe_nonfinite_step();
    if (mpi_.rank() == 0) {
      print_line("ddpm: warning: step " + std::to_string(flags.step) + " skipped: non-finite loss or gradient on some rank");
    }
    if (++consecutive_skips_ >= config_.train.max_consecutive_skips) {
      throw std::runtime_error(std::to_string(consecutive_skips_) + " consecutive steps had a non-finite loss or gradient " +
                               "(train.max_consecutive_skips; last: step " + std::to_string(flags.step) +
                               "); stopping with the last good checkpoint kept in " + config_.run.dir);
    }
  }
  return stop;
}

double Trainer::parameter_norm() const {
  torch::NoGradGuard no_grad;
  std::vector<torch::Tensor> params;
  for (const torch::Tensor& p : parameters_) params.push_back(p.detach());
  return torch::stack(at::_foreach_norm(params, 2.0)).norm().item<double>();
}

void Trainer::evaluate_bound_now() {
  if (!eval_model_) {
    // Its initial weights are overwritten by the EMA below; building it must not move the training RNG
    // (dropout draws from it), or a resumed run would diverge from an uninterrupted one.
    std::vector<at::Generator> generators = rank_generators(device_);
    std::vector<torch::Tensor> states;
    for (at::Generator& g : generators) states.push_back(g.get_state());
    eval_model_ = UNet(unet_options(config_));
    eval_model_->to(device_);
    for (size_t i = 0; i < generators.size(); ++i) generators[i].set_state(states[i]);
  }
  ema_.copy_to(*eval_model_, 0);
  const Watchdog::Scope armed(*watchdog_, "the bound evaluation of step " + std::to_string(step_), 100.0);
  monitor_->evaluate(step_, eval_model_);
}

void Trainer::check_replicas() {
  torch::NoGradGuard no_grad;
  // Per parameter: its sum and its sum of squares in float64; a checksum with one entry per tensor also
  // tells which parameter diverged.
  std::vector<torch::Tensor> sums;
  for (const torch::Tensor& p : parameters_) {
    const torch::Tensor d = p.detach().to(torch::kFloat64);
    sums.push_back(torch::stack({d.sum(), d.pow(2).sum()}));
  }
  const torch::Tensor mine = torch::stack(sums).contiguous();
  torch::Tensor rank0 = mine.clone();
  const Watchdog::Scope armed(*watchdog_, "the replica check of step " + std::to_string(step_));
  comm_->broadcast(rank0, 0);
  comm_->synchronize();
  const torch::Tensor differs = (mine != rank0).any(1).cpu();
  std::string first;
  const auto names = model_->named_parameters();
  for (int64_t i = 0; i < differs.size(0) && first.empty(); ++i) {
    if (differs[i].item<bool>()) first = names[static_cast<size_t>(i)].key();
  }
  if (!mpi_.all_ok(first.empty())) {
    throw std::runtime_error("replicas diverged at step " + std::to_string(step_) + ": " +
                             (first.empty() ? std::string("another rank's parameters differ from rank 0's")
                                            : "rank " + std::to_string(mpi_.rank()) + "'s " + first + " differs from rank 0's"));
  }
}

void Trainer::save_checkpoint() {
  torch::NoGradGuard no_grad;
  const auto started = std::chrono::steady_clock::now();
  std::string written;
  std::string rng;
  for (const at::Generator& g : rank_generators(device_)) {
    const std::string bytes = tensor_bytes(g.get_state());
    rng += std::to_string(bytes.size()) + ":" + bytes;
  }
  const Watchdog::Scope armed(*watchdog_, "the checkpoint of step " + std::to_string(step_), 10.0);
  const std::vector<std::string> all_rng = mpi_.gather_to_root(rng);
  std::string error;
  if (mpi_.rank() == 0) {
    try {
      Checkpoint checkpoint;
      checkpoint.step = step_;
      nlohmann::json meta;
      meta["model_shape"] = model_shape_signature(config_);
      meta["config"] = to_yaml(config_);
      meta["world_size"] = mpi_.world_size();
      meta["loader"] = {{"epoch", loader_state_.epoch}, {"position", loader_state_.position}};
      checkpoint.metadata = meta.dump();
      for (const auto& item : model_->named_parameters()) checkpoint.tensors["model/" + item.key()] = item.value().detach().cpu();
      for (auto& [name, tensor] : ema_.state()) checkpoint.tensors[name] = tensor.cpu();
      for (auto& [name, tensor] : optimizer_->state()) checkpoint.tensors[name] = tensor.cpu();
      for (size_t r = 0; r < all_rng.size(); ++r) {
        // Each rank's generator states, length-prefixed, split back into one tensor per generator.
        const std::string& packed = all_rng[r];
        size_t at = 0;
        for (int g = 0; at < packed.size(); ++g) {
          const size_t colon = packed.find(':', at);
          const size_t length = std::stoull(packed.substr(at, colon - at));
          checkpoint.tensors["rng/" + std::to_string(r) + "/" + std::to_string(g)] = bytes_tensor(packed.substr(colon + 1, length));
          at = colon + 1 + length;
        }
      }
      written = write_checkpoint(config_.run.dir, checkpoint, [this](CheckpointWritePhase phase) {
                  faults_.at_checkpoint_phase(phase, step_);
                }).string();
      prune_checkpoints(config_.run.dir, config_.train.keep_checkpoints, step_);
    } catch (const std::exception& e) {
      error = e.what();
    }
  }
  error = mpi_.broadcast_string(error);
  if (!error.empty()) throw std::runtime_error("checkpoint at step " + std::to_string(step_) + " failed: " + error);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  const std::string size = mpi_.broadcast_string(written.empty() ? "0" : std::to_string(fs::file_size(written)));
  monitor_->observe_checkpoint(step_, seconds, std::stod(size));
}

void Trainer::run_steps(int64_t steps, PhaseTimer* timer) {
  DataLoader loader(dataset_, loader_options(config_, mpi_.rank(), mpi_.world_size(), device_), loader_state_);
  model_->train();
  timer_ = timer;
  for (int64_t i = 0; i < steps; ++i) {
    const Batch batch = loader.next();
    loader_state_ = batch.after;
    train_step(batch);
  }
  timer_ = nullptr;
  account_flags(/*drain=*/true);
}

void Trainer::synchronize() {
  const Watchdog::Scope armed(*watchdog_, "waiting for the device at step " + std::to_string(step_));
  comm_->synchronize();
#ifdef DDPM_WITH_CUDA
  if (device_.is_cuda()) torch::cuda::synchronize(device_.index());
#endif
}

void Trainer::train() {
  const int64_t total = config_.train.steps;
  std::unique_ptr<Progress> progress;
  if (mpi_.rank() == 0) {
    progress = std::make_unique<Progress>(options_.progress, total, (fs::path(config_.run.dir) / "train_log.jsonl").string());
  }
  if (step_ >= total) return;
  DataLoader loader(dataset_, loader_options(config_, mpi_.rank(), mpi_.world_size(), device_), loader_state_);
  Throughput throughput(config_.train.batch_size * mpi_.world_size());
  throughput.start(step_);
  torch::Tensor loss_sum = torch::zeros({}, torch::TensorOptions().dtype(torch::kFloat64).device(device_));
  int64_t losses = 0;
  model_->train();
  while (step_ < total) {
    faults_.maybe_hang(step_ + 1);
    const StepResult result = [&] {
      // The step proper, data included: with --sync-check the host must never wait for the device in here.
      const int64_t attempted = step_ + 1;
      try {
        const SyncCheckScope sync_check(options_.sync_check, device_);
        const auto wait_start = std::chrono::steady_clock::now();
        const Batch batch = loader.next();
        last_data_wait_ = std::chrono::duration<double>(std::chrono::steady_clock::now() - wait_start).count();
        loader_state_ = batch.after;
        return train_step(batch);
      } catch (const std::exception& e) {
        if (!options_.sync_check || !is_sync_check_error(e)) throw;
        throw std::runtime_error("step " + std::to_string(attempted) + " made the host wait for the GPU (--sync-check): " +
                                 e.what());
      }
    }();
    loss_sum += result.loss.to(torch::kFloat64);
    ++losses;
    if (step_ % config_.train.log_every == 0 || step_ == total) {
      // Reading the loss waits for the device, hence for any collective still queued: bounded too.
      const Watchdog::Scope armed(*watchdog_, "the loss average of step " + std::to_string(step_));
      torch::Tensor mean_loss = (loss_sum / static_cast<double>(losses)).to(torch::kFloat32).reshape({1});
      if (mpi_.world_size() > 1) {
        comm_->all_reduce_sum(mean_loss);
        mean_loss.div_(mpi_.world_size());
      }
      StepReport report;
      report.step = step_;
      report.loss = mean_loss.item<double>();
      report.grad_norm = result.grad_norm.item<double>();
      report.lr = learning_rate(step_ - 1);
      report.images_per_second = throughput.mark(step_);
      report.eta_seconds = throughput.eta_seconds(step_, total);
      report.comm_exposed_seconds = last_sync_.exposed_seconds;
      report.comm_total_seconds = last_sync_.total_seconds;
      report.skipped_steps = skipped_steps_;
      if (progress) progress->report(report);
      monitor_->report(step_, step_ * config_.train.batch_size, report.loss, report.grad_norm, parameter_norm(), report.lr,
                       report.images_per_second / static_cast<double>(mpi_.world_size()));
      loss_sum.zero_();
      losses = 0;
    }
    if (synchronizer_ && config_.distributed.replica_check_every > 0 && step_ % config_.distributed.replica_check_every == 0) {
      check_replicas();
    }
    const bool checkpoint_due = step_ % config_.train.checkpoint_every == 0 || step_ == total;
    // Before a checkpoint every step's flags are accounted for (a GPU reads them a step late).
    const bool stop = result.stop || (checkpoint_due && account_flags(/*drain=*/true));
    if (stop) {
      save_checkpoint();
      stopped_by_signal_ = true;
      if (mpi_.rank() == 0) {
        std::cout << "\nstopped on a signal after step " << step_ << ": checkpoint committed in " << config_.run.dir
                  << "; run the same command to resume" << std::endl;
      }
      break;
    }
    if (monitor_->wants_eval(step_)) evaluate_bound_now();
    if (checkpoint_due) save_checkpoint();
  }
  if (progress) progress->finish();
}

}  // namespace ddpm
