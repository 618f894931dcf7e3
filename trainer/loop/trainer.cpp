#include "trainer/loop/trainer.h"

#include <filesystem>
#include <iostream>
#include <thread>

#include "data/dataset_spec.h"
#include "distributed/console.h"
#include "distributed/sync_check.h"
#include "trainer/checkpoint/rng_state.h"
#include "trainer/config/builders.h"
#include "distributed/stop_signal.h"
#include "trainer/loop/train_log.h"

namespace ddpm {
namespace {

// The model is built from the same seed on every rank (rank 0's weights are broadcast anyway); dropout then draws
// from generators seeded by seed and rank.
TrainState build_train_state(const Config& config, const torch::Device& device, int rank) {
  seed_rank_generators(config.run.seed, rank);
  torch::manual_seed(config.run.seed);
  UNet model(unet_options(config));
  model->to(device);
  if (config.train.channels_last) use_channels_last(model);
  seed_rank_generators(config.run.seed, rank);
  AdamOptions adam;
  adam.fused = config.train.fused_adam;
  adam.beta2 = config.train.adam_beta2;
  return TrainState(model, adam, config.train.ema_rates);
}

// Every rank opens the data set itself (it must exist on every node) and fails up front on bad files.
std::shared_ptr<const ImageDataset> open_dataset(const Config& config, const MpiContext& mpi) {
  std::shared_ptr<const ImageDataset> dataset;
  std::string error;
  try {
    dataset = std::make_shared<const ImageDataset>(load_dataset(dataset_spec(config, config.data.split)));
  } catch (const std::exception& e) {
    error = e.what();
  }
  mpi.throw_if_any_failed(error, "another rank failed to open the data set");
  return dataset;
}

}  // namespace

Trainer::Trainer(const Config& config, const MpiContext& mpi, const torch::Device& device, TrainerOptions options)
    : config_(config),
      mpi_(mpi),
      device_(device),
      options_(options),
      comm_(make_communicator(mpi, config.distributed.backend, device)),
      guard_(mpi, *comm_, config.distributed.timeout_seconds, to_yaml(config_)),  // every rank runs rank 0's config
      faults_(FaultInjector::from_environment(mpi.rank())),
      diffusion_(make_diffusion(config).to(device)),
      state_(build_train_state(config_, device, mpi.rank())),
      checkpointer_(config_, mpi, device, guard_.watchdog(), faults_),
      step_flags_(device),
      health_(config.train.max_consecutive_skips) {
  if (options_.sync_check) require_sync_check_device(device_);
  if (config_.train.cuda_graph) check_capturable();
  dataset_ = open_dataset(config_, mpi_);
  make_timestep_sampler();
  start_description_ = checkpointer_.resume_or_start(state_);
  if (timestep_sampler_ && !state_.absent_extra_state.empty() && state_.step > 0 && mpi_.rank() == 0) {
    print_line("ddpm: warning: the checkpoint of step " + std::to_string(state_.step) +
               " holds no timestep sampler state (it was trained with train.timestep_sampler uniform): "
               "loss_second_moment starts from an empty history, drawing t uniformly until every t has " +
               std::to_string(LossSecondMomentSampler::kHistory) + " losses");
  }
  guard_.broadcast_parameters(state_.parameters);
  monitor_ = std::make_unique<TrainingMonitor>(config_, mpi_, diffusion_, device_);
  monitor_->watch_timestep_sampler(timestep_sampler_.get());
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
        state_.parameters, *comm_, static_cast<int64_t>(config_.distributed.bucket_mb * kMiB),
        static_cast<int64_t>(config_.distributed.first_bucket_mb * kMiB));
  }
  step_ = std::make_unique<TrainStep>(config_, device_, diffusion_, state_, *comm_, guard_.watchdog(), *monitor_,
                                      synchronizer_.get(), timestep_sampler_.get(), options_.static_step_inputs);
}

void Trainer::make_timestep_sampler() {
  if (config_.train.timestep_sampler != TimestepSamplerKind::kLossSecondMoment) return;
  timestep_sampler_ = std::make_unique<LossSecondMomentSampler>(diffusion_.num_timesteps(), device_);
  state_.extra_state.emplace_back("timestep_sampler/history", timestep_sampler_->history());
  state_.extra_state.emplace_back("timestep_sampler/counts", timestep_sampler_->counts());
}

void Trainer::check_replicas(int64_t step) {
  std::vector<torch::Tensor> tensors = state_.parameters;
  std::vector<std::string> names = state_.names;
  for (const auto& [name, tensor] : state_.extra_state) {
    tensors.push_back(tensor);
    names.push_back(name);
  }
  guard_.check_replicas(tensors, names, step);
}

// ---- The loop. Steps count from 1: state_.step is the number of completed steps, so the step being trained is
// state_.step + 1, and after it state_.step names it (in logs, checkpoints and metrics).
void Trainer::train() {
  const int64_t total = config_.train.steps;
  TrainingLog log(config_, mpi_, *comm_, guard_.watchdog(), *monitor_, options_.progress);
  if (state_.step >= total) return;
  DataLoader loader(dataset_, loader_options(config_, mpi_.rank(), mpi_.world_size(), device_), state_.loader);
  log.start(state_.step);
  state_.model->train();
  while (state_.step < total) {
    faults_.maybe_hang(state_.step + 1);
    const StepResult result = next_step(loader);
    const int64_t step = state_.step;
    log.record(step, result.loss, result.grad_norm, step_->last_sync(), health_.skipped_steps(), state_.parameters);
    const int64_t replica_every = config_.distributed.replica_check_every;
    if (synchronizer_ && replica_every > 0 && step % replica_every == 0) {
      check_replicas(step);
    }
    const bool checkpoint_due = step % config_.train.checkpoint_every == 0 || step == total;
    bool stop = result.stop;
    // Before a checkpoint or an evaluation every step's flags are accounted for (a GPU reads them a step late).
    const bool evaluate = monitor_->wants_eval(step);
    if (!stop && (checkpoint_due || evaluate)) stop = account_flags(/*drain=*/true);
    // The evaluation takes minutes; a stop request ends it within a model call (all ranks agree at its end).
    if (!stop && evaluate) stop = !evaluate_bound_now();
    if (stop) {
      stop_after(step);
      break;
    }
    if (checkpoint_due) checkpoint();
  }
  log.finish();
}

void Trainer::stop_after(int64_t step) {
  checkpoint();
  stopped_by_signal_ = true;
  if (mpi_.rank() == 0) {
    std::cout << "\nstopped on " << (StopSignal::name().empty() ? "a signal" : StopSignal::name()) << " after step " << step
              << ": checkpoint committed in " << config_.run.dir << "; run the same command to resume" << std::endl;
  }
}

Trainer::StepResult Trainer::next_step(DataLoader& loader) {
  // The step proper, data included: with --sync-check the host must never wait for the device in here.
  const int64_t step = state_.step + 1;
  try {
    const SyncCheckScope sync_check(options_.sync_check, device_);
    const auto wait_start = std::chrono::steady_clock::now();
    const Batch batch = loader.next();
    last_data_wait_ = std::chrono::duration<double>(std::chrono::steady_clock::now() - wait_start).count();
    state_.loader = batch.after;
    return take_step(batch);
  } catch (const std::exception& e) {
    if (!options_.sync_check || !is_sync_check_error(e)) throw;
    throw std::runtime_error("step " + std::to_string(step) + " made the host wait for the GPU (--sync-check): " + e.what());
  }
}

Trainer::StepResult Trainer::take_step(const Batch& batch) {
  using Clock = std::chrono::steady_clock;
  const Clock::time_point start = Clock::now();
  StepClock clock;
  const StepOutputs out = step_->run(batch, faults_, timer_, clock);
  ++state_.step;
  step_flags_.push(state_.step, out.flags);
  const bool stop = account_flags(/*drain=*/false);
  const Clock::time_point end = Clock::now();
  const auto seconds = [](Clock::time_point a, Clock::time_point b) { return std::chrono::duration<double>(b - a).count(); };
  monitor_->observe_phases(last_data_wait_, seconds(start, clock.backward_done), seconds(clock.backward_done, clock.synced),
                           seconds(clock.synced, end));
  return {out.loss, out.grad_norm, stop};
}

bool Trainer::account_flags(bool drain) {
  const auto wait = [this](const std::function<bool()>& ready) {
    // Waiting for a step's flags waits for everything queued before them, the gradient buckets included.
    const Watchdog::Scope armed(guard_.watchdog(),
                                "the gradient all-reduce and step agreement of step " + std::to_string(state_.step - 1));
    while (!ready()) {
      comm_->check_async_error();
      std::this_thread::sleep_for(std::chrono::microseconds(50));
    }
  };
  bool stop = false;
  for (const StepFlags& flags : step_flags_.pop(drain, wait)) {
    stop = stop || flags.stop;
    if (!health_.account(flags)) continue;
    monitor_->observe_nonfinite_step();
    if (mpi_.rank() == 0) {
      print_line("ddpm: warning: step " + std::to_string(flags.step) + " skipped: non-finite loss or gradient on some rank");
    }
    health_.throw_if_exhausted(flags.step, config_.run.dir);
  }
  return stop;
}

void Trainer::check_capturable() const {
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
  mpi_.throw_if_any_failed(why.empty() ? "" : config_.source + ": train.cuda_graph is true, but " + why,
                           "another rank cannot capture its training step (see its message)");
}

void Trainer::checkpoint() {
  const CheckpointReceipt receipt = checkpointer_.save(state_);
  monitor_->observe_checkpoint(state_.step, receipt.seconds, receipt.bytes);
}

bool Trainer::evaluate_bound_now() {
  if (!eval_model_) {
    // Its initial weights are overwritten by the EMA below; building it must not move the training RNG
    // (dropout draws from it), or a resumed run would diverge from an uninterrupted one.
    const GeneratorStateGuard keep(device_);
    eval_model_ = UNet(unet_options(config_));
    eval_model_->to(device_);
  }
  state_.ema.copy_to(*eval_model_, 0);
  const Watchdog::Scope armed(guard_.watchdog(), "the bound evaluation of step " + std::to_string(state_.step), 100.0);
  try {
    monitor_->evaluate(state_.step, eval_model_);
  } catch (const StopRequested& stopped) {
    if (mpi_.rank() == 0) print_line("ddpm: " + std::string(stopped.what()) + " stopped on a signal; not reported");
    return false;
  }
  return true;
}

void Trainer::run_steps(int64_t steps, PhaseTimer* timer) {
  DataLoader loader(dataset_, loader_options(config_, mpi_.rank(), mpi_.world_size(), device_), state_.loader);
  state_.model->train();
  timer_ = timer;
  for (int64_t i = 0; i < steps; ++i) {
    const Batch batch = loader.next();
    state_.loader = batch.after;
    take_step(batch);
  }
  timer_ = nullptr;
  account_flags(/*drain=*/true);
}

void Trainer::synchronize() {
  const Watchdog::Scope armed(guard_.watchdog(), "waiting for the device at step " + std::to_string(state_.step));
  comm_->synchronize();
#ifdef DDPM_WITH_CUDA
  if (device_.is_cuda()) torch::cuda::synchronize(device_.index());
#endif
}

}  // namespace ddpm
