// What every rank exports to Prometheus (prometheus-cpp's pull exposer): training health, the step-time split,
// communication, checkpoints, memory, and the full variational bound in bits/dim from two sources (running
// estimates from training batches, and the periodic full evaluation). A scrape reads one snapshot, published
// whole under a lock, so all terms of one evaluation always come from the same step.
#pragma once
#include <prometheus/client_metric.h>
#include <prometheus/collectable.h>
#include <prometheus/metric_family.h>
#include <prometheus/metric_type.h>

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace ddpm {

struct BoundSnapshot {
  bool valid = false;
  double prior = 0, decoder = 0, vb_sum = 0, total = 0;  // bits/dim: L_T, L_0, Σ L_{t-1}, all
  std::vector<double> ranges;                             // Σ of L_{t-1} over each timestep range
};

struct MetricsSnapshot {
  // Gauges of the last logging interval.
  double loss = 0, eps_mse = 0, grad_norm = 0, param_norm = 0, learning_rate = 0, images_per_second = 0;
  std::array<double, 4> eps_mse_by_quartile{};
  std::array<double, 4> phase_seconds{};  // data_wait, forward_backward, exposed_comm, optimizer
  BoundSnapshot train_bound, eval_bound;
  // Per timestep range, step 1 first and then the bound's ranges (empty: not exported): the mean log σ² of a learned
  // variance on the training batches, and the importance sampler's probability mass.
  std::vector<double> log_variance_by_range, sampler_probability_by_range;
  int64_t eval_step = 0;
  double checkpoint_seconds = 0, checkpoint_bytes = 0;
  int64_t checkpoint_step = 0;
  double memory_in_use = 0, memory_peak = 0;
  // Counters (monotone within a process).
  int64_t steps = 0, images = 0, nonfinite_steps = 0, checkpoints = 0, allreduce_bytes = 0;
  double allreduce_seconds = 0;
};

// The timestep ranges of the exported L_{t-1} groups: `count` contiguous ranges of diffusion steps 2..T
// (labels "2-250", ...), which add up to Σ L_{t-1}.
std::vector<std::pair<int64_t, int64_t>> bound_ranges(int64_t num_timesteps, int64_t count);

class MetricsRegistry : public prometheus::Collectable {
 public:
  MetricsRegistry(std::string run, int rank, std::vector<std::pair<int64_t, int64_t>> ranges);
  void publish(const MetricsSnapshot& snapshot);
  MetricsSnapshot snapshot() const;
  std::vector<prometheus::MetricFamily> Collect() const override;

 private:
  const std::string run_;
  const std::string rank_;
  const std::vector<std::pair<int64_t, int64_t>> ranges_;
  mutable std::mutex mutex_;
  MetricsSnapshot snapshot_;
};

// Serves GET /metrics of a registry (Prometheus text format, prometheus-cpp's TextSerializer) on
// bind_address:port (port 0: any free port), from one thread of its own. Only GET /metrics answers 200; other
// paths 404, other methods 405; nothing a request says changes any state. A client gets 2 s to send its request
// and to take the answer, so a slow or malformed one cannot hold the endpoint, and never the training loop.
// (Not prometheus-cpp's civetweb Exposer: Debian's civetweb starts threads with a fixed 100 KB stack, too small
// for the static TLS of a process holding LibTorch, so its pthread_create fails.)
class MetricsServer {
 public:
  // Throws std::runtime_error naming the address when it cannot listen (e.g. the port is taken).
  MetricsServer(const std::string& bind_address, int port, std::shared_ptr<MetricsRegistry> registry);
  ~MetricsServer();
  MetricsServer(const MetricsServer&) = delete;
  MetricsServer& operator=(const MetricsServer&) = delete;
  int port() const { return port_; }

 private:
  void serve();
  void answer(int client) const;

  std::shared_ptr<MetricsRegistry> registry_;
  int listener_ = -1;
  int port_ = 0;
  std::atomic<bool> stopping_{false};
  std::thread thread_;
};

// Bytes of device memory in use and at peak: the CUDA caching allocator's on GPU, the process's resident set
// (current, and peak from getrusage) on CPU.
std::pair<double, double> device_memory_bytes(bool cuda, int device_index);

}  // namespace ddpm
