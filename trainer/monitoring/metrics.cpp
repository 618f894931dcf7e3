#include "trainer/monitoring/metrics.h"

#include <sys/resource.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <prometheus/text_serializer.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <fstream>
#include <stdexcept>
#ifdef DDPM_WITH_CUDA
#include <c10/cuda/CUDACachingAllocator.h>
#endif

namespace ddpm {
namespace {

using prometheus::ClientMetric;
using prometheus::MetricFamily;
using prometheus::MetricType;

class FamilyBuilder {
 public:
  FamilyBuilder(const std::string& run, const std::string& rank) : run_(run), rank_(rank) {}

  void gauge(const std::string& name, const std::string& help, double value,
             const std::vector<ClientMetric::Label>& labels = {}) {
    add(name, help, MetricType::Gauge, labels).gauge.value = value;
  }
  void counter(const std::string& name, const std::string& help, double value) {
    add(name, help, MetricType::Counter, {}).counter.value = value;
  }
  std::vector<MetricFamily> take() { return std::move(families_); }

 private:
  ClientMetric& add(const std::string& name, const std::string& help, MetricType type,
                    const std::vector<ClientMetric::Label>& labels) {
    if (families_.empty() || families_.back().name != name) families_.push_back(MetricFamily{name, help, type, {}});
    ClientMetric metric;
    metric.label = {{"rank", rank_}, {"run", run_}};
    metric.label.insert(metric.label.end(), labels.begin(), labels.end());
    families_.back().metric.push_back(metric);
    return families_.back().metric.back();
  }

  const std::string& run_;
  const std::string& rank_;
  std::vector<MetricFamily> families_;
};

std::string range_label(const std::pair<int64_t, int64_t>& range) {
  return std::to_string(range.first) + "-" + std::to_string(range.second);
}

}  // namespace

std::vector<std::pair<int64_t, int64_t>> bound_ranges(int64_t num_timesteps, int64_t count) {
  // Diffusion steps 2..T carry the L_{t-1} terms (step 1 is the decoder).
  const int64_t first = 2, steps = num_timesteps - 1;
  count = std::max<int64_t>(1, std::min(count, steps));
  std::vector<std::pair<int64_t, int64_t>> ranges;
  for (int64_t i = 0; i < count; ++i) {
    const int64_t lo = first + steps * i / count, hi = first + steps * (i + 1) / count - 1;
    ranges.emplace_back(lo, hi);
  }
  return ranges;
}

MetricsRegistry::MetricsRegistry(std::string run, int rank, std::vector<std::pair<int64_t, int64_t>> ranges)
    : run_(std::move(run)), rank_(std::to_string(rank)), ranges_(std::move(ranges)) {}

void MetricsRegistry::publish(const MetricsSnapshot& snapshot) {
  const std::lock_guard<std::mutex> lock(mutex_);
  snapshot_ = snapshot;
}

MetricsSnapshot MetricsRegistry::snapshot() const {
  const std::lock_guard<std::mutex> lock(mutex_);
  return snapshot_;
}

std::vector<MetricFamily> MetricsRegistry::Collect() const {
  const MetricsSnapshot s = snapshot();  // one consistent copy per scrape
  FamilyBuilder f(run_, rank_);
  f.gauge("ddpm_train_loss", "Training loss, mean over the last logging interval", s.loss);
  f.gauge("ddpm_train_eps_mse", "Mean squared error of the predicted noise (epsilon), last logging interval", s.eps_mse);
  for (int q = 0; q < 4; ++q) {
    f.gauge("ddpm_train_eps_mse_by_quartile", "Epsilon MSE by timestep quartile (0: t near 0 .. 3: t near T)",
            s.eps_mse_by_quartile[static_cast<size_t>(q)], {{"t_quartile", std::to_string(q)}});
  }
  const auto bound = [&](const std::string& source, const BoundSnapshot& b) {
    if (!b.valid) return;
    const std::vector<std::pair<std::string, double>> terms = {
        {"prior", b.prior}, {"decoder", b.decoder}, {"vb_sum", b.vb_sum}, {"total", b.total}};
    for (const auto& [term, value] : terms) {
      f.gauge("ddpm_bound_bpd",
              "Variational bound in bits/dim: prior L_T, decoder L_0, vb_sum = sum of L_{t-1}, total; source train "
              "(running estimate from training batches) or eval (full evaluation over all T)",
              value, {{"source", source}, {"term", term}});
    }
  };
  bound("train", s.train_bound);
  bound("eval", s.eval_bound);
  const auto ranges = [&](const std::string& source, const BoundSnapshot& b) {
    if (!b.valid) return;
    for (size_t i = 0; i < ranges_.size() && i < b.ranges.size(); ++i) {
      f.gauge("ddpm_bound_range_bpd", "Sum of the L_{t-1} terms (bits/dim) over a range of diffusion steps t",
              b.ranges[i], {{"source", source}, {"t_range", range_label(ranges_[i])}});
    }
  };
  ranges("train", s.train_bound);
  ranges("eval", s.eval_bound);
  // Step 1 (the decoder) is range "1-1"; the rest are the bound's ranges.
  const auto step_range_label = [&](size_t i) { return i == 0 ? std::string("1-1") : range_label(ranges_[i - 1]); };
  const auto by_step_range = [&](const std::string& name, const std::string& help, const std::vector<double>& values) {
    for (size_t i = 0; i < values.size() && i <= ranges_.size(); ++i) {
      f.gauge(name, help, values[i], {{"t_range", step_range_label(i)}});
    }
  };
  by_step_range("ddpm_model_log_variance",
                "Mean log sigma^2 per dimension of the learned reverse-process variance on the training batches, by "
                "range of diffusion steps t",
                s.log_variance_by_range);
  by_step_range("ddpm_timestep_sampler_probability",
                "Probability the importance sampler of t (loss_second_moment) gives a range of diffusion steps t "
                "(uniform: the range's share of T)",
                s.sampler_probability_by_range);
  if (s.eval_bound.valid) f.gauge("ddpm_bound_eval_step", "Training step of the last full bound evaluation", static_cast<double>(s.eval_step));
  f.gauge("ddpm_grad_norm", "Global gradient norm before clipping", s.grad_norm);
  f.gauge("ddpm_param_norm", "Global parameter norm", s.param_norm);
  f.gauge("ddpm_learning_rate", "Learning rate of the last step", s.learning_rate);
  f.gauge("ddpm_images_per_second", "Training images per second on this rank", s.images_per_second);
  const char* phases[4] = {"data_wait", "forward_backward", "exposed_comm", "optimizer"};
  for (int p = 0; p < 4; ++p) {
    f.gauge("ddpm_step_phase_seconds", "Seconds of the last step by phase (host clock)", s.phase_seconds[static_cast<size_t>(p)],
            {{"phase", phases[p]}});
  }
  f.gauge("ddpm_checkpoint_duration_seconds", "Seconds the last checkpoint took", s.checkpoint_seconds);
  f.gauge("ddpm_checkpoint_size_bytes", "Size of the last checkpoint file", s.checkpoint_bytes);
  f.gauge("ddpm_checkpoint_last_step", "Step of the last committed checkpoint", static_cast<double>(s.checkpoint_step));
  f.gauge("ddpm_device_memory_bytes", "Device memory (CUDA allocator; resident set on CPU)", s.memory_in_use, {{"kind", "in_use"}});
  f.gauge("ddpm_device_memory_bytes", "Device memory (CUDA allocator; resident set on CPU)", s.memory_peak, {{"kind", "peak"}});
  f.counter("ddpm_steps_total", "Optimizer steps taken by this process", static_cast<double>(s.steps));
  f.counter("ddpm_images_total", "Training images consumed by this rank", static_cast<double>(s.images));
  f.counter("ddpm_nonfinite_steps_total", "Steps skipped because a loss or gradient was not finite on some rank",
            static_cast<double>(s.nonfinite_steps));
  f.counter("ddpm_allreduce_seconds_total", "Seconds from first bucket launch to last bucket reduced, summed over steps",
            s.allreduce_seconds);
  f.counter("ddpm_allreduce_bytes_total", "Gradient bytes all-reduced by this rank", static_cast<double>(s.allreduce_bytes));
  f.counter("ddpm_checkpoints_total", "Checkpoints committed by this process", static_cast<double>(s.checkpoints));
  return f.take();
}

MetricsServer::MetricsServer(const std::string& bind_address, int port, std::shared_ptr<MetricsRegistry> registry)
    : registry_(std::move(registry)) {
  const std::string address = bind_address + ":" + std::to_string(port);
  const auto fail = [&](const std::string& what) {
    const std::string reason = std::strerror(errno);
    if (listener_ >= 0) ::close(listener_);
    throw std::runtime_error("monitoring: cannot serve metrics on " + address + ": " + what + ": " + reason +
                             (errno == EADDRINUSE ? " (the port is taken: set monitoring.base_port)" : ""));
  };
  sockaddr_in socket_address{};
  socket_address.sin_family = AF_INET;
  socket_address.sin_port = htons(static_cast<uint16_t>(port));
  if (::inet_pton(AF_INET, bind_address.c_str(), &socket_address.sin_addr) != 1) {
    errno = EINVAL;
    fail("monitoring.bind_address must be an IPv4 address");
  }
  listener_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (listener_ < 0) fail("socket");
  // The server closes each connection first, which leaves its port in TIME_WAIT for a minute: without this, a run
  // restarted right after a scrape (a resume after a crash) could not serve on its port. A live listener on the
  // port still makes bind fail.
  const int reuse = 1;
  if (::setsockopt(listener_, SOL_SOCKET, SO_REUSEADDR, &reuse, sizeof(reuse)) != 0) fail("setsockopt(SO_REUSEADDR)");
  if (::bind(listener_, reinterpret_cast<sockaddr*>(&socket_address), sizeof(socket_address)) != 0) fail("bind");
  if (::listen(listener_, 16) != 0) fail("listen");
  socklen_t length = sizeof(socket_address);
  ::getsockname(listener_, reinterpret_cast<sockaddr*>(&socket_address), &length);
  port_ = ntohs(socket_address.sin_port);
  thread_ = std::thread([this] { serve(); });
}

MetricsServer::~MetricsServer() {
  stopping_ = true;
  if (thread_.joinable()) thread_.join();
  ::close(listener_);
}

void MetricsServer::serve() {
  while (!stopping_) {
    pollfd waiting{listener_, POLLIN, 0};
    if (::poll(&waiting, 1, 200) <= 0) continue;  // wakes up to notice stopping_
    const int client = ::accept4(listener_, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (client < 0) continue;
    answer(client);
    ::close(client);
  }
}

void MetricsServer::answer(int client) const {
  // One deadline for the whole exchange: a client that trickles bytes cannot hold the endpoint.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(2);
  const auto wait_for = [&](short events) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return false;
    pollfd ready{client, events, 0};
    return ::poll(&ready, 1, static_cast<int>(left.count())) > 0;
  };
  // Read the request head (up to 8 KiB); only its first line matters.
  std::string request;
  char buffer[1024];
  while (request.size() < 8192 && request.find("\r\n\r\n") == std::string::npos && wait_for(POLLIN)) {
    const ssize_t n = ::recv(client, buffer, sizeof(buffer), 0);
    if (n <= 0) break;
    request.append(buffer, static_cast<size_t>(n));
  }
  const std::string line = request.substr(0, request.find("\r\n"));
  std::string status = "200 OK", type = "text/plain; version=0.0.4; charset=utf-8", body;
  const bool get = line.rfind("GET ", 0) == 0;
  const std::string target = get ? line.substr(4, line.find(' ', 4) - 4) : "";
  if (!get) {
    status = "405 Method Not Allowed";
    type = "text/plain";
    body = "only GET /metrics\n";
  } else if (target != "/metrics" && target.rfind("/metrics?", 0) != 0) {
    status = "404 Not Found";
    type = "text/plain";
    body = "only GET /metrics\n";
  } else {
    body = prometheus::TextSerializer().Serialize(registry_->Collect());
  }
  const std::string response = "HTTP/1.1 " + status + "\r\nContent-Type: " + type + "\r\nContent-Length: " +
                               std::to_string(body.size()) + "\r\nConnection: close\r\n\r\n" + body;
  size_t sent = 0;
  while (sent < response.size() && wait_for(POLLOUT)) {
    const ssize_t n = ::send(client, response.data() + sent, response.size() - sent, MSG_NOSIGNAL);
    if (n <= 0) return;
    sent += static_cast<size_t>(n);
  }
}

std::pair<double, double> device_memory_bytes(bool cuda, int device_index) {
#ifdef DDPM_WITH_CUDA
  if (cuda) {
    const auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(static_cast<c10::DeviceIndex>(device_index));
    const auto& all = stats.allocated_bytes[static_cast<size_t>(c10::CachingAllocator::StatType::AGGREGATE)];
    return {static_cast<double>(all.current), static_cast<double>(all.peak)};
  }
#endif
  long pages = 0, resident = 0;
  std::ifstream statm("/proc/self/statm");
  statm >> pages >> resident;
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  // The kernel updates ru_maxrss lazily: the peak can read a little below the resident set measured just now.
  const double in_use = static_cast<double>(resident) * static_cast<double>(sysconf(_SC_PAGESIZE));
  return {in_use, std::max(in_use, static_cast<double>(usage.ru_maxrss) * 1024.0)};
}

}  // namespace ddpm
