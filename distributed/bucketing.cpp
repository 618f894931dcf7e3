#include "distributed/bucketing.h"

#include "distributed/sync_check.h"

#include <torch/csrc/autograd/function.h>
#include <torch/csrc/autograd/utils/lambda_post_hook.h>
#include <torch/csrc/autograd/variable.h>

#include <algorithm>
#include <numeric>
#include <stdexcept>
#include <string>

namespace ddpm {

namespace {

// A dense tensor's elements as a 1-D view in the order they lie in memory; undefined when it has gaps or
// overlapping elements. A bucket slot filled from it and viewed back with the same strides is the same tensor.
torch::Tensor memory_order_view(const torch::Tensor& t) {
  std::vector<int64_t> dims(static_cast<size_t>(t.dim()));
  std::iota(dims.begin(), dims.end(), int64_t{0});
  const c10::IntArrayRef strides = t.strides();
  std::stable_sort(dims.begin(), dims.end(), [&](int64_t a, int64_t b) { return strides[a] > strides[b]; });
  const torch::Tensor permuted = t.permute(dims);
  return permuted.is_contiguous() ? permuted.view({-1}) : torch::Tensor();
}

// Same sizes and the same strides where they matter (a dimension of size 1 has no stride to speak of).
bool same_layout(const torch::Tensor& a, const torch::Tensor& b) {
  if (a.sizes() != b.sizes()) return false;
  for (int64_t d = 0; d < a.dim(); ++d) {
    if (a.size(d) > 1 && a.stride(d) != b.stride(d)) return false;
  }
  return true;
}

}  // namespace

std::vector<std::vector<size_t>> make_bucket_layout(const std::vector<torch::Tensor>& params,
                                                    const std::vector<size_t>& order, int64_t bucket_bytes,
                                                    int64_t first_bucket_bytes) {
  std::vector<std::vector<size_t>> layout;
  std::vector<size_t> current;
  int64_t current_bytes = 0;
  for (const size_t index : order) {
    const int64_t limit = layout.empty() ? first_bucket_bytes : bucket_bytes;
    const int64_t bytes = params.at(index).numel() * static_cast<int64_t>(params.at(index).element_size());
    if (!current.empty() && current_bytes + bytes > limit) {
      layout.push_back(std::move(current));
      current.clear();
      current_bytes = 0;
    }
    current.push_back(index);
    current_bytes += bytes;
  }
  if (!current.empty()) layout.push_back(std::move(current));
  return layout;
}

GradientSynchronizer::GradientSynchronizer(std::vector<torch::Tensor> params, Communicator& comm, int64_t bucket_bytes,
                                           int64_t first_bucket_bytes)
    : params_(std::move(params)),
      comm_(comm),
      bucket_bytes_(bucket_bytes),
      first_bucket_bytes_(first_bucket_bytes),
      async_thread_(comm.backend() == CommBackend::kMpi) {
  if (params_.empty()) throw std::invalid_argument("GradientSynchronizer: no parameters");
  for (size_t i = 0; i < params_.size(); ++i) {
    if (params_[i].scalar_type() != params_[0].scalar_type() || params_[i].device() != params_[0].device()) {
      throw std::invalid_argument("GradientSynchronizer: parameter " + std::to_string(i) + " is " +
                                  std::string(c10::toString(params_[i].scalar_type())) + " on " + params_[i].device().str() +
                                  ", parameter 0 " + c10::toString(params_[0].scalar_type()) + " on " +
                                  params_[0].device().str() + ": a bucket holds gradients of one dtype on one device");
    }
    if (!memory_order_view(params_[i].detach()).defined()) {
      throw std::invalid_argument("GradientSynchronizer: parameter " + std::to_string(i) + " (sizes " +
                                  c10::str(params_[i].sizes()) + ", strides " + c10::str(params_[i].strides()) +
                                  ") is not dense, so its gradient has no bucket slot to be a view of");
    }
  }
  std::vector<size_t> reverse(params_.size());
  std::iota(reverse.rbegin(), reverse.rend(), size_t{0});
  build_buckets(make_bucket_layout(params_, reverse, bucket_bytes_, first_bucket_bytes_));
  ready_.assign(params_.size(), false);
  for (size_t i = 0; i < params_.size(); ++i) {
    // A post-hook on the gradient accumulator runs once .grad() holds the accumulated gradient, which is what
    // micro-batch accumulation needs (a tensor hook would see only the last contribution).
    std::shared_ptr<torch::autograd::Node> accumulator = torch::autograd::impl::grad_accumulator(params_[i]);
    hook_keys_.push_back(accumulator->add_post_hook(std::make_unique<torch::autograd::utils::LambdaPostHook>(
        [this, i](const torch::autograd::variable_list& outputs, const torch::autograd::variable_list&) {
          on_gradient_ready(i);
          return outputs;
        })));
    accumulators_.push_back(std::move(accumulator));
  }
  if (async_thread_) comm_thread_ = std::thread([this] { comm_loop(); });
}

GradientSynchronizer::~GradientSynchronizer() {
  {
    const std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
    active_ = false;
  }
  work_cv_.notify_all();
  if (comm_thread_.joinable()) comm_thread_.join();
  // The parameters outlive us: their accumulators must not call into a destroyed synchronizer.
  for (size_t i = 0; i < accumulators_.size(); ++i) accumulators_[i]->del_post_hook(hook_keys_[i]);
}

void GradientSynchronizer::build_buckets(const std::vector<std::vector<size_t>>& layout) {
  buckets_.clear();
  bucket_of_.assign(params_.size(), 0);
  for (size_t b = 0; b < layout.size(); ++b) {
    Bucket bucket;
    bucket.params = layout[b];
    int64_t offset = 0;
    for (const size_t p : bucket.params) {
      bucket.offsets.push_back(offset);
      offset += params_[p].numel();
      bucket_of_[p] = b;
    }
    bucket.buffer = torch::empty({offset}, params_[bucket.params.front()].options().requires_grad(false));
    buckets_.push_back(std::move(bucket));
  }
}

void GradientSynchronizer::begin() {
  const std::lock_guard<std::mutex> lock(mutex_);
  if (error_) std::rethrow_exception(error_);
  active_ = true;
  std::fill(ready_.begin(), ready_.end(), false);
  ready_order_.clear();
  for (Bucket& bucket : buckets_) {
    bucket.unready = bucket.params.size();
    bucket.packed = false;
  }
  next_launch_ = 0;
  completed_ = 0;
}

void GradientSynchronizer::on_gradient_ready(size_t param) {
  Bucket* complete = nullptr;
  {
    const std::lock_guard<std::mutex> lock(mutex_);
    if (!active_ || ready_[param]) return;
    ready_[param] = true;
    ready_order_.push_back(param);
    Bucket& bucket = buckets_[bucket_of_[param]];
    if (--bucket.unready == 0) complete = &bucket;
  }
  if (complete == nullptr) return;
  // Packed outside the lock: the communication thread goes on with the buckets already launched meanwhile.
  pack(*complete);
  const std::lock_guard<std::mutex> lock(mutex_);
  complete->packed = true;
  launch_ready_buckets_locked();
}

torch::Tensor GradientSynchronizer::memory_order_gradient(size_t param) const {
  const torch::Tensor& p = params_[param];
  const torch::Tensor& grad = p.grad();
  if (!grad.defined()) return torch::zeros({p.numel()}, p.options().requires_grad(false));
  if (same_layout(grad, p)) {
    const torch::Tensor flat = memory_order_view(grad);
    if (flat.defined()) return flat;
  }
  // Autograd lays a gradient out like its parameter; one that is not (a user's hook) is copied into that layout.
  torch::Tensor relaid = torch::empty_strided(p.sizes(), p.strides(), grad.options());
  relaid.copy_(grad);
  return memory_order_view(relaid);
}

void GradientSynchronizer::pack(Bucket& bucket) const {
  torch::NoGradGuard no_grad;
  std::vector<torch::Tensor> flat;
  flat.reserve(bucket.params.size());
  bool aliased = false;
  for (const size_t p : bucket.params) {
    flat.push_back(memory_order_gradient(p));
    aliased = aliased || flat.back().is_alias_of(bucket.buffer);
  }
  if (!aliased) {
    torch::cat_out(bucket.buffer, flat, 0);  // the whole bucket in one copy (batched kernels on a GPU)
  } else {
    // Gradients accumulated into last step's views of their slots (no zero_grad in between) are already there.
    for (size_t k = 0; k < flat.size(); ++k) {
      torch::Tensor slot = bucket.buffer.narrow(0, bucket.offsets[k], flat[k].numel());
      if (flat[k].data_ptr() != slot.data_ptr()) slot.copy_(flat[k]);
    }
  }
  // Divided by the world size before the summing collective, so that it yields the average.
  if (comm_.world_size() > 1) bucket.buffer.mul_(1.0 / static_cast<double>(comm_.world_size()));
}

void GradientSynchronizer::launch_ready_buckets_locked() {
  // Strictly in bucket order: every rank issues the same collectives in the same sequence.
  while (next_launch_ < buckets_.size() && buckets_[next_launch_].packed) {
    if (next_launch_ == 0) first_launch_ = Clock::now();
    if (async_thread_) {
      queue_.push_back(next_launch_);
      work_cv_.notify_one();
    } else {
      // NCCL enqueues on its own stream and returns at once: launching inline costs backward nothing.
      try {
        communicate(next_launch_);
      } catch (...) {
        if (!error_) error_ = std::current_exception();
      }
      ++completed_;
      last_complete_ = Clock::now();
    }
    ++next_launch_;
  }
}

void GradientSynchronizer::communicate(size_t bucket) { comm_.all_reduce_sum(buckets_[bucket].buffer); }

void GradientSynchronizer::comm_loop() {
  std::unique_lock<std::mutex> lock(mutex_);
  while (true) {
    work_cv_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
    if (stopping_) return;
    const size_t bucket = queue_.front();
    queue_.pop_front();
    lock.unlock();
    std::exception_ptr failure;
    try {
      communicate(bucket);
    } catch (...) {
      failure = std::current_exception();
    }
    lock.lock();
    if (failure && !error_) error_ = failure;
    ++completed_;
    last_complete_ = Clock::now();
    done_cv_.notify_all();
  }
}

SyncStats GradientSynchronizer::finish() {
  std::vector<size_t> missing;
  {
    const std::lock_guard<std::mutex> lock(mutex_);
    if (!active_) throw std::logic_error("GradientSynchronizer::finish without begin");
    for (size_t p = 0; p < params_.size(); ++p) {
      if (!ready_[p]) missing.push_back(p);
    }
  }
  // Parameters that took no part in this backward contribute what they accumulated earlier (or zeros), so every
  // bucket completes on every rank.
  for (const size_t p : missing) on_gradient_ready(p);
  std::unique_lock<std::mutex> lock(mutex_);
  const Clock::time_point wait_start = Clock::now();
  done_cv_.wait(lock, [this] { return completed_ == buckets_.size(); });
  const Clock::time_point wait_end = Clock::now();
  active_ = false;
  if (error_) std::rethrow_exception(error_);
  lock.unlock();

  SyncStats stats;
  stats.exposed_seconds = std::chrono::duration<double>(wait_end - wait_start).count();
  stats.total_seconds = std::chrono::duration<double>(last_complete_ - first_launch_).count();
  stats.buckets = static_cast<int64_t>(buckets_.size());
  for (const Bucket& bucket : buckets_) {
    stats.bytes += bucket.buffer.numel() * static_cast<int64_t>(bucket.buffer.element_size());
    for (size_t k = 0; k < bucket.params.size(); ++k) {
      torch::Tensor& param = params_[bucket.params[k]];
      // The average in place: no copy back, the gradient is its slot seen with the parameter's strides.
      param.mutable_grad() =
          bucket.buffer.narrow(0, bucket.offsets[k], param.numel()).as_strided(param.sizes(), param.strides());
    }
  }
  if (!rebuilt_) {
    rebuild_from_ready_order();
    rebuilt_ = true;
  }
  return stats;
}

void GradientSynchronizer::rebuild_from_ready_order() {
  // Rank 0's order for everyone: ready orders can differ across ranks (autograd threads), layouts must not.
  std::vector<int64_t> order(ready_order_.begin(), ready_order_.end());
  const SyncCheckExempt once;  // the layout is agreed once, after the first synchronized step, not every step
  torch::Tensor shared = torch::tensor(order, torch::kLong).to(params_.front().device());
  comm_.broadcast(shared, 0);
  comm_.synchronize();
  const torch::Tensor on_host = shared.cpu();
  std::vector<size_t> agreed(params_.size());
  for (size_t i = 0; i < agreed.size(); ++i) agreed[i] = static_cast<size_t>(on_host[static_cast<int64_t>(i)].item<int64_t>());
  build_buckets(make_bucket_layout(params_, agreed, bucket_bytes_, first_bucket_bytes_));
}

}  // namespace ddpm
