// The metrics: the L_{t-1} timestep ranges, the Prometheus text of a published snapshot (exact lines, one family
// per metric name, the bound only when valid), and the server on the loopback interface: it binds any free port
// for port 0 and reports it, answers GET /metrics with the latest snapshot over a plain socket (404 and 405
// otherwise), and a port that is taken is a clear error naming the address.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <prometheus/text_serializer.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <cstring>
#include <memory>
#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "trainer/monitoring/metrics.h"

namespace {

using Ranges = std::vector<std::pair<int64_t, int64_t>>;

TEST(Metrics, BoundRangesSplitStepsTwoToTContiguously) {
  EXPECT_EQ(ddpm::bound_ranges(1000, 4), (Ranges{{2, 250}, {251, 500}, {501, 750}, {751, 1000}}));
  EXPECT_EQ(ddpm::bound_ranges(1000, 1), (Ranges{{2, 1000}}));
  EXPECT_EQ(ddpm::bound_ranges(10, 3), (Ranges{{2, 4}, {5, 7}, {8, 10}}));
  // More ranges than steps: one step each; fewer than one: one range.
  EXPECT_EQ(ddpm::bound_ranges(5, 10), (Ranges{{2, 2}, {3, 3}, {4, 4}, {5, 5}}));
  EXPECT_EQ(ddpm::bound_ranges(1000, 0), (Ranges{{2, 1000}}));
}

// Values exact in binary, so that their text is what a person would write.
ddpm::MetricsSnapshot example_snapshot() {
  ddpm::MetricsSnapshot s;
  s.loss = 0.25;
  s.eps_mse = 0.5;
  s.grad_norm = 1.5;
  s.param_norm = 96.0;
  s.learning_rate = 0.0001220703125;  // 2^-13
  s.images_per_second = 512.0;
  s.eps_mse_by_quartile = {0.75, 0.375, 0.1875, 0.0625};
  s.phase_seconds = {0.5, 2.25, 0.125, 0.03125};
  s.eval_bound.valid = true;
  s.eval_bound.prior = 0.0078125;
  s.eval_bound.decoder = 1.75;
  s.eval_bound.vb_sum = 1.5;
  s.eval_bound.total = 3.25;
  s.eval_bound.ranges = {1.0, 0.5};
  s.eval_step = 400;
  s.checkpoint_seconds = 2.5;
  s.checkpoint_bytes = 123456789.0;
  s.checkpoint_step = 300;
  s.memory_in_use = 1048576.0;
  s.memory_peak = 2097152.0;
  s.steps = 17;
  s.images = 2176;
  s.nonfinite_steps = 2;
  s.checkpoints = 3;
  s.allreduce_bytes = 65536;
  s.allreduce_seconds = 0.75;
  return s;
}

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

size_t count_line(const std::vector<std::string>& lines, const std::string& line) {
  size_t n = 0;
  for (const std::string& l : lines) n += l == line ? 1 : 0;
  return n;
}

size_t count_containing(const std::vector<std::string>& lines, const std::string& part) {
  size_t n = 0;
  for (const std::string& l : lines) n += l.find(part) != std::string::npos ? 1 : 0;
  return n;
}

// The sample lines of the example snapshot for rank 3 of run "demo", as the text format writes them.
const std::vector<std::string> kExampleLines = {
    R"(ddpm_train_loss{rank="3",run="demo"} 0.25)",
    R"(ddpm_train_eps_mse{rank="3",run="demo"} 0.5)",
    R"(ddpm_train_eps_mse_by_quartile{rank="3",run="demo",t_quartile="0"} 0.75)",
    R"(ddpm_train_eps_mse_by_quartile{rank="3",run="demo",t_quartile="1"} 0.375)",
    R"(ddpm_train_eps_mse_by_quartile{rank="3",run="demo",t_quartile="2"} 0.1875)",
    R"(ddpm_train_eps_mse_by_quartile{rank="3",run="demo",t_quartile="3"} 0.0625)",
    R"(ddpm_bound_bpd{rank="3",run="demo",source="eval",term="prior"} 0.0078125)",
    R"(ddpm_bound_bpd{rank="3",run="demo",source="eval",term="decoder"} 1.75)",
    R"(ddpm_bound_bpd{rank="3",run="demo",source="eval",term="vb_sum"} 1.5)",
    R"(ddpm_bound_bpd{rank="3",run="demo",source="eval",term="total"} 3.25)",
    R"(ddpm_bound_range_bpd{rank="3",run="demo",source="eval",t_range="2-500"} 1)",
    R"(ddpm_bound_range_bpd{rank="3",run="demo",source="eval",t_range="501-1000"} 0.5)",
    R"(ddpm_bound_eval_step{rank="3",run="demo"} 400)",
    R"(ddpm_grad_norm{rank="3",run="demo"} 1.5)",
    R"(ddpm_param_norm{rank="3",run="demo"} 96)",
    R"(ddpm_learning_rate{rank="3",run="demo"} 0.0001220703125)",
    R"(ddpm_images_per_second{rank="3",run="demo"} 512)",
    R"(ddpm_step_phase_seconds{rank="3",run="demo",phase="data_wait"} 0.5)",
    R"(ddpm_step_phase_seconds{rank="3",run="demo",phase="forward_backward"} 2.25)",
    R"(ddpm_step_phase_seconds{rank="3",run="demo",phase="exposed_comm"} 0.125)",
    R"(ddpm_step_phase_seconds{rank="3",run="demo",phase="optimizer"} 0.03125)",
    R"(ddpm_checkpoint_duration_seconds{rank="3",run="demo"} 2.5)",
    R"(ddpm_checkpoint_size_bytes{rank="3",run="demo"} 123456789)",
    R"(ddpm_checkpoint_last_step{rank="3",run="demo"} 300)",
    R"(ddpm_device_memory_bytes{rank="3",run="demo",kind="in_use"} 1048576)",
    R"(ddpm_device_memory_bytes{rank="3",run="demo",kind="peak"} 2097152)",
    R"(ddpm_steps_total{rank="3",run="demo"} 17)",
    R"(ddpm_images_total{rank="3",run="demo"} 2176)",
    R"(ddpm_nonfinite_steps_total{rank="3",run="demo"} 2)",
    R"(ddpm_allreduce_seconds_total{rank="3",run="demo"} 0.75)",
    R"(ddpm_allreduce_bytes_total{rank="3",run="demo"} 65536)",
    R"(ddpm_checkpoints_total{rank="3",run="demo"} 3)",
};

std::shared_ptr<ddpm::MetricsRegistry> example_registry() {
  auto registry = std::make_shared<ddpm::MetricsRegistry>("demo", 3, ddpm::bound_ranges(1000, 2));
  registry->publish(example_snapshot());
  return registry;
}

std::string render(const ddpm::MetricsRegistry& registry) {
  return prometheus::TextSerializer().Serialize(registry.Collect());
}

TEST(Metrics, TextOfASnapshotHasEveryValueOnItsLine) {
  const std::vector<std::string> lines = lines_of(render(*example_registry()));
  // Every sample line is one of the expected ones, in this order, and every expected one is there.
  std::vector<std::string> samples;
  for (const std::string& line : lines) {
    if (!line.empty() && line[0] != '#') samples.push_back(line);
  }
  EXPECT_EQ(samples, kExampleLines);
  // One HELP and TYPE per family, even where two metrics of one name come in a row.
  EXPECT_EQ(count_line(lines, "# TYPE ddpm_device_memory_bytes gauge"), 1u);
  EXPECT_EQ(count_line(lines, "# TYPE ddpm_bound_bpd gauge"), 1u);
  EXPECT_EQ(count_line(lines, "# TYPE ddpm_train_loss gauge"), 1u);
  EXPECT_EQ(count_line(lines, "# TYPE ddpm_steps_total counter"), 1u);
  EXPECT_EQ(count_line(lines, "# TYPE ddpm_checkpoints_total counter"), 1u);
  EXPECT_EQ(count_containing(lines, "# TYPE "), 21u);
  EXPECT_EQ(count_line(lines, "# HELP ddpm_train_loss Training loss, mean over the last logging interval"), 1u);
}

TEST(Metrics, BoundIsExportedOnlyFromValidSources) {
  auto registry = std::make_shared<ddpm::MetricsRegistry>("demo", 0, ddpm::bound_ranges(1000, 2));
  ddpm::MetricsSnapshot s = example_snapshot();
  s.eval_bound.valid = false;
  s.train_bound.valid = true;
  s.train_bound.prior = 0.5;
  s.train_bound.total = 4.5;
  s.train_bound.ranges = {2.0};  // fewer values than ranges: only those there
  registry->publish(s);
  std::vector<std::string> lines = lines_of(render(*registry));
  EXPECT_EQ(count_containing(lines, R"(source="eval")"), 0u);
  EXPECT_EQ(count_containing(lines, "ddpm_bound_eval_step"), 0u) << "the eval step of an evaluation that never ran";
  EXPECT_EQ(count_line(lines, R"(ddpm_bound_bpd{rank="0",run="demo",source="train",term="prior"} 0.5)"), 1u);
  EXPECT_EQ(count_line(lines, R"(ddpm_bound_bpd{rank="0",run="demo",source="train",term="total"} 4.5)"), 1u);
  EXPECT_EQ(count_line(lines, R"(ddpm_bound_range_bpd{rank="0",run="demo",source="train",t_range="2-500"} 2)"), 1u);
  EXPECT_EQ(count_containing(lines, "ddpm_bound_range_bpd{"), 1u);

  s.train_bound.valid = false;
  registry->publish(s);
  lines = lines_of(render(*registry));
  EXPECT_EQ(count_containing(lines, "ddpm_bound"), 0u);
}

TEST(Metrics, SnapshotReturnsWhatWasPublished) {
  ddpm::MetricsRegistry registry("demo", 1, {});
  EXPECT_EQ(registry.snapshot().steps, 0);
  ddpm::MetricsSnapshot s = example_snapshot();
  registry.publish(s);
  EXPECT_EQ(registry.snapshot().steps, 17);
  EXPECT_EQ(registry.snapshot().eval_bound.ranges, (std::vector<double>{1.0, 0.5}));
  s.steps = 18;  // the registry holds a copy
  EXPECT_EQ(registry.snapshot().steps, 17);
}

// ---- The server, over plain sockets on 127.0.0.1 ----

struct Response {
  std::string status_line;
  std::string head;  // the header lines, "\r\n" separated
  std::string body;
};

// Sends `request` to 127.0.0.1:port and reads the answer until the server closes.
Response http(int port, const std::string& request) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) throw std::runtime_error(std::string("socket: ") + std::strerror(errno));
  timeval timeout{5, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof(timeout));
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(static_cast<uint16_t>(port));
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0) {
    const std::string error = std::strerror(errno);
    ::close(fd);
    throw std::runtime_error("connect to 127.0.0.1:" + std::to_string(port) + ": " + error);
  }
  size_t sent = 0;
  while (sent < request.size()) {
    const ssize_t n = ::send(fd, request.data() + sent, request.size() - sent, MSG_NOSIGNAL);
    if (n <= 0) break;
    sent += static_cast<size_t>(n);
  }
  std::string answer;
  char buffer[4096];
  for (;;) {
    const ssize_t n = ::recv(fd, buffer, sizeof(buffer), 0);
    if (n <= 0) break;
    answer.append(buffer, static_cast<size_t>(n));
  }
  ::close(fd);
  Response r;
  const size_t end_of_head = answer.find("\r\n\r\n");
  if (end_of_head == std::string::npos) {
    r.status_line = answer;
    return r;
  }
  const std::string head = answer.substr(0, end_of_head);
  r.status_line = head.substr(0, head.find("\r\n"));
  r.head = head;
  r.body = answer.substr(end_of_head + 4);
  return r;
}

Response get(int port, const std::string& target) {
  return http(port, "GET " + target + " HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: */*\r\n\r\n");
}

std::string header(const Response& r, const std::string& name) {
  const std::string key = "\r\n" + name + ": ";
  const size_t at = r.head.find(key);
  if (at == std::string::npos) return "";
  const size_t from = at + key.size();
  return r.head.substr(from, r.head.find("\r\n", from) - from);
}

TEST(MetricsServer, PortZeroBindsAFreePortAndServesThePublishedSnapshot) {
  const auto registry = example_registry();
  const ddpm::MetricsServer server("127.0.0.1", 0, registry);
  ASSERT_GT(server.port(), 0);
  ASSERT_LT(server.port(), 65536);
  const Response r = get(server.port(), "/metrics");
  EXPECT_EQ(r.status_line, "HTTP/1.1 200 OK");
  EXPECT_EQ(header(r, "Content-Type"), "text/plain; version=0.0.4; charset=utf-8");
  EXPECT_EQ(header(r, "Content-Length"), std::to_string(r.body.size()));
  EXPECT_EQ(header(r, "Connection"), "close");
  EXPECT_EQ(r.body, render(*registry));  // the very text of the snapshot
  const std::vector<std::string> lines = lines_of(r.body);
  for (const std::string& line : kExampleLines) EXPECT_EQ(count_line(lines, line), 1u) << line;

  // A new snapshot is what the next scrape reads.
  ddpm::MetricsSnapshot next = example_snapshot();
  next.steps = 18;
  next.loss = 0.125;
  registry->publish(next);
  const std::vector<std::string> after = lines_of(get(server.port(), "/metrics").body);
  EXPECT_EQ(count_line(after, R"(ddpm_steps_total{rank="3",run="demo"} 18)"), 1u);
  EXPECT_EQ(count_line(after, R"(ddpm_train_loss{rank="3",run="demo"} 0.125)"), 1u);
  EXPECT_EQ(count_line(after, R"(ddpm_steps_total{rank="3",run="demo"} 17)"), 0u);
  // A query string is still /metrics.
  EXPECT_EQ(get(server.port(), "/metrics?name[]=ddpm_steps_total").status_line, "HTTP/1.1 200 OK");
}

TEST(MetricsServer, OnlyGetMetricsAnswers) {
  const auto registry = example_registry();
  const ddpm::MetricsServer server("127.0.0.1", 0, registry);
  for (const std::string target : {"/", "/metric", "/metricsx", "/favicon.ico"}) {
    const Response r = get(server.port(), target);
    EXPECT_EQ(r.status_line, "HTTP/1.1 404 Not Found") << target;
    EXPECT_EQ(r.body, "only GET /metrics\n") << target;
  }
  for (const std::string method : {"POST", "PUT", "HEAD", "get"}) {
    const Response r = http(server.port(), method + " /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\n\r\n");
    EXPECT_EQ(r.status_line, "HTTP/1.1 405 Method Not Allowed") << method;
    EXPECT_EQ(r.body, "only GET /metrics\n") << method;
  }
  // It keeps serving after those.
  EXPECT_EQ(get(server.port(), "/metrics").status_line, "HTTP/1.1 200 OK");
}

std::string construction_error(const std::string& address, int port) {
  try {
    const ddpm::MetricsServer server(address, port, example_registry());
  } catch (const std::runtime_error& e) {
    return e.what();
  }
  return "";
}

TEST(MetricsServer, TakenPortIsAClearErrorNamingTheAddress) {
  const ddpm::MetricsServer first("127.0.0.1", 0, example_registry());
  const int port = first.port();
  const std::string error = construction_error("127.0.0.1", port);
  ASSERT_FALSE(error.empty()) << "a second server bound the taken port " << port;
  EXPECT_NE(error.find("cannot serve metrics on 127.0.0.1:" + std::to_string(port)), std::string::npos) << error;
  EXPECT_NE(error.find("bind"), std::string::npos) << error;
  EXPECT_NE(error.find(std::strerror(EADDRINUSE)), std::string::npos) << error;
  EXPECT_NE(error.find("the port is taken: set monitoring.base_port"), std::string::npos) << error;
  // The first one still answers.
  EXPECT_EQ(get(port, "/metrics").status_line, "HTTP/1.1 200 OK");
}

TEST(MetricsServer, BindAddressMustBeIPv4) {
  for (const std::string address : {"localhost", "::1", "127.0.0", ""}) {
    const std::string error = construction_error(address, 0);
    ASSERT_FALSE(error.empty()) << "accepted '" << address << "'";
    EXPECT_NE(error.find("cannot serve metrics on " + address + ":0"), std::string::npos) << error;
    EXPECT_NE(error.find("monitoring.bind_address must be an IPv4 address"), std::string::npos) << error;
    EXPECT_EQ(error.find("the port is taken"), std::string::npos) << error;
  }
}

TEST(Metrics, CpuMemoryIsTheResidentSetAndItsPeak) {
  const auto [in_use, peak] = ddpm::device_memory_bytes(false, 0);
  // A process holding LibTorch; the peak is never below what is in use (ru_maxrss, which the kernel updates
  // lazily, could read lower than the resident set just measured).
  EXPECT_GT(in_use, 1e6);
  EXPECT_GE(peak, in_use);
}

// A run restarted on the same port (a resume after a crash) right after a scrape must be able to listen again: the
// server closes each connection first, so the port keeps TIME_WAIT entries for a minute, which bind() refuses
// without SO_REUSEADDR (that still refuses a port another socket listens on: see the test above).
TEST(MetricsServer, RestartedServerRebindsItsPortRightAfterAScrape) {
  int port = 0;
  {
    const ddpm::MetricsServer first("127.0.0.1", 0, example_registry());
    port = first.port();
    EXPECT_EQ(get(port, "/metrics").status_line, "HTTP/1.1 200 OK");
  }
  EXPECT_EQ(construction_error("127.0.0.1", port), "");
}

}  // namespace
