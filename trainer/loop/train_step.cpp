#include "trainer/loop/train_step.h"

#include <stdexcept>

#include "trainer/config/builders.h"
#include "trainer/diffusion/losses.h"
#include "trainer/diffusion/keyed_noise.h"
#include "distributed/stop_signal.h"
#include "trainer/model/autocast.h"

namespace ddpm {

TrainStep::TrainStep(const Config& config, const torch::Device& device, const GaussianDiffusion& diffusion,
                     TrainState& state, Communicator& comm, Watchdog& watchdog, TrainingMonitor& monitor,
                     GradientSynchronizer* synchronizer, LossSecondMomentSampler* timestep_sampler, bool static_inputs)
    : config_(config),
      device_(device),
      diffusion_(diffusion),
      state_(state),
      comm_(comm),
      watchdog_(watchdog),
      monitor_(monitor),
      synchronizer_(synchronizer),
      timestep_sampler_(timestep_sampler),
      lr_(lr_schedule(config)),
      static_inputs_(static_inputs || config.train.cuda_graph) {
  if (config.train.cuda_graph) graph_ = std::make_unique<StepGraph>(device);
}

StepOutputs TrainStep::run(const Batch& batch, const FaultInjector& faults, PhaseTimer* timer, StepClock& clock) {
  const int64_t step = state_.step + 1;
  if (timer != nullptr) timer->start_step();
  if (!static_inputs_) return enqueue(eager_inputs(batch), StepHooks(faults, step, timer, &clock));
  refill_static_inputs(batch);
  const auto queue = [&] { static_outputs_ = enqueue(static_, StepHooks(faults, step, nullptr, nullptr)); };
  if (graph_) {
    graph_->run(queue);
  } else {
    queue();
  }
  if (timer != nullptr) timer->mark(Phase::kCapturedStep);
  clock.backward_done = clock.synced = std::chrono::steady_clock::now();  // the host only queued: no split to report
  return static_outputs_;
}

// ---- BEGIN the training step: device work only, the same whether eager or captured ----
StepOutputs TrainStep::enqueue(const Inputs& in, const StepHooks& hooks) {
  // t and ε of each example from (seed, step, data set index) alone: the same image gets the same draw whatever
  // the number of ranks, so N ranks with batch B train exactly like one rank with batch N·B.
  const KeyedDraws draws = keyed_timesteps_and_noise(config_.run.seed, in.step, in.indices, in.images.sizes().slice(1),
                                                     diffusion_.num_timesteps(), in.images.scalar_type());
  // t uniform (Algorithm 1), or importance-sampled from the same keyed u, each loss then weighted by 1/(T·p_t).
  torch::Tensor t_all = draws.t, weights_all;
  if (timestep_sampler_ != nullptr) {
    const LossSecondMomentSampler::Draw drawn = timestep_sampler_->draw(draws.u, draws.t);
    t_all = drawn.t;
    weights_all = drawn.weights.to(torch::kFloat32);
  }
  const int64_t micro = config_.train.micro_batches;
  const int64_t chunk = in.images.size(0) / micro;
  const torch::Tensor images = hooks.input(in.images);
  state_.optimizer.zero_grad();
  torch::Tensor loss_sum = torch::zeros({}, in.images.options());
  std::vector<torch::Tensor> example_losses;  // for the timestep sampler, unweighted
  for (int64_t m = 0; m < micro; ++m) {
    const torch::Tensor x0 = images.narrow(0, m * chunk, chunk);
    const torch::Tensor t = t_all.narrow(0, m * chunk, chunk);
    const torch::Tensor noise = draws.noise.narrow(0, m * chunk, chunk);
    const torch::Tensor weights = weights_all.defined() ? weights_all.narrow(0, m * chunk, chunk) : torch::Tensor();
    torch::Tensor x_t = diffusion_.q_sample(x0, t, noise);  // eq. 4, Algorithm 1
    if (config_.train.channels_last) x_t = x_t.contiguous(torch::MemoryFormat::ChannelsLast);
    torch::Tensor output;  // ε, or ε and v (a learned variance)
    {
      const AutocastScope autocast(device_, config_.train.precision == Precision::kBf16);
      output = state_.model->forward(x_t, t);
    }
    output = output.to(torch::kFloat32);  // the loss and the bound terms in float32 whatever the precision
    const TrainingLosses losses = training_losses(diffusion_, config_.diffusion.loss, output, x0, x_t, t, noise);
    const torch::Tensor per_example = weights.defined() ? losses.loss * weights : losses.loss;
    const torch::Tensor loss = hooks.loss(per_example.mean() / static_cast<double>(micro));
    loss_sum += loss.detach();
    if (timestep_sampler_ != nullptr) example_losses.push_back(losses.loss.detach());
    monitor_.observe_batch(losses, output, x0, x_t, t, weights);
    hooks.mark(Phase::kForward);
    // Gradients accumulate locally; only the last micro-batch's backward starts the all-reduce.
    if (synchronizer_ && m == micro - 1) synchronizer_->begin();
    loss.backward();
    hooks.mark(Phase::kBackward);
  }
  if (synchronizer_) {
    const Watchdog::Scope armed(watchdog_, "the gradient all-reduce of step " + std::to_string(state_.step + 1));
    last_sync_ = synchronizer_->finish();
    monitor_.observe_sync(last_sync_);
  }
  // Every rank's losses, for the timestep sampler (after the buckets: one collective at a time on the communicator).
  std::pair<torch::Tensor, torch::Tensor> sampled;
  if (timestep_sampler_ != nullptr) sampled = losses_of_all_ranks(in.indices, t_all, torch::cat(example_losses));
  hooks.mark(Phase::kCommunication);
  hooks.gradients(state_.parameters);
  const torch::Tensor grad_norm = clip_gradients();
  const torch::Tensor flags = agree(loss_sum, grad_norm, in.stop);
  // A non-finite loss or gradient on any rank: every rank skips the update, on the device (no host sync);
  // weights, EMA, optimizer and timestep sampler state stay bitwise as they were.
  const torch::Tensor skip = (flags[0] > 0).to(torch::kFloat32);
  if (timestep_sampler_ != nullptr) timestep_sampler_->update(sampled.first, sampled.second, skip > 0);
  if (in.lr.defined()) {
    state_.optimizer.step(in.lr, skip);
  } else {
    state_.optimizer.step(lr_.at(state_.step + 1), skip);
  }
  state_.ema.update(*state_.model, skip);
  hooks.mark(Phase::kOptimizer);
  return {loss_sum, grad_norm, flags};
}
// ---- END the training step ----

torch::Tensor TrainStep::clip_gradients() {
  std::vector<torch::Tensor> grads;
  for (const torch::Tensor& p : state_.parameters) grads.push_back(p.grad());
  const torch::Tensor total = torch::stack(at::_foreach_norm(grads, 2.0)).norm();
  if (config_.train.grad_clip > 0) {
    // No host sync: the clip factor stays on the device.
    const torch::Tensor factor = (config_.train.grad_clip / (total + 1e-6)).clamp_max(1.0);
    at::_foreach_mul_(grads, factor);
  }
  return total;
}

std::pair<torch::Tensor, torch::Tensor> TrainStep::losses_of_all_ranks(const torch::Tensor& indices, const torch::Tensor& t,
                                                                     const torch::Tensor& losses) {
  const torch::Tensor mine =
      torch::stack({indices.to(torch::kFloat64), t.to(torch::kFloat64), losses.to(torch::kFloat64)}, 1);  // [B, 3]
  torch::Tensor all = mine;
  if (comm_.world_size() > 1) {
    // Each rank's rows in its own slice, zeros elsewhere: the sum is the concatenation, exactly (x + 0 = x).
    const int64_t batch = mine.size(0);
    all = torch::zeros({batch * comm_.world_size(), 3}, mine.options());
    all.narrow(0, batch * comm_.rank(), batch).copy_(mine);
    const Watchdog::Scope armed(watchdog_, "the timestep sampler's gathering of losses at step " + std::to_string(state_.step + 1));
    comm_.all_reduce_sum(all);
  }
  const torch::Tensor order = std::get<1>(torch::sort(all.select(1, 0), /*stable=*/true, /*dim=*/0, /*descending=*/false));
  const torch::Tensor sorted = all.index_select(0, order);
  return {sorted.select(1, 1).to(torch::kLong), sorted.select(1, 2).contiguous()};
}

torch::Tensor TrainStep::agree(const torch::Tensor& loss, const torch::Tensor& grad_norm, const torch::Tensor& stop) {
  const torch::Tensor bad = torch::logical_not(torch::isfinite(loss) & torch::isfinite(grad_norm)).to(torch::kFloat32);
  torch::Tensor flags = torch::stack({bad, stop.to(torch::kFloat32)});
  if (comm_.world_size() > 1) {
    // MPI reduces at once (CPU); NCCL only enqueues, and the host reads the result a step later.
    const Watchdog::Scope armed(watchdog_, "the step agreement of step " + std::to_string(state_.step + 1));
    comm_.all_reduce_sum(flags);
  }
  return flags;
}

TrainStep::Inputs TrainStep::eager_inputs(const Batch& batch) const {
  Inputs in;
  in.images = batch.images;
  in.indices = batch.indices.to(device_, torch::kLong, /*non_blocking=*/true);
  in.step = torch::full({}, state_.step, torch::TensorOptions().dtype(torch::kLong).device(device_));
  in.stop = torch::full({}, StopSignal::requested() ? 1.0f : 0.0f, torch::TensorOptions().device(device_));
  return in;
}

void TrainStep::refill_static_inputs(const Batch& batch) {
  Inputs& in = static_;
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
                             c10::str(batch.images.sizes()) + " at step " + std::to_string(state_.step + 1) +
                             "; a captured step needs the same shapes every step");
  }
  // Asynchronous fills and copies on the current stream, which the replay waits for.
  in.images.copy_(batch.images, /*non_blocking=*/true);
  in.indices.copy_(batch.indices, /*non_blocking=*/true);
  in.step.fill_(state_.step);
  in.stop.fill_(StopSignal::requested() ? 1.0 : 0.0);
  in.lr.fill_(lr_.at(state_.step + 1));
}

}  // namespace ddpm
