#include "trainer/tools/profile.h"

#include <kineto/ActivityType.h>
#include <torch/csrc/autograd/profiler_kineto.h>

#include <algorithm>
#include <set>
#include <stdexcept>
#include <unordered_map>

namespace ddpm {
namespace {

namespace kineto = torch::autograd::profiler;
using torch::profiler::impl::ActivityType;
using torch::profiler::impl::ProfilerConfig;
using torch::profiler::impl::ProfilerState;

constexpr size_t kMaxNameLength = 200;  // kernel names are whole template instantiations

std::set<ActivityType> activities(bool cuda) {
  if (cuda) return {ActivityType::CPU, ActivityType::CUDA};
  return {ActivityType::CPU};
}

bool is_device_work(const kineto::KinetoEvent& event) {
  const auto type = static_cast<libkineto::ActivityType>(event.activityType());
  return type == libkineto::ActivityType::CONCURRENT_KERNEL || type == libkineto::ActivityType::GPU_MEMCPY ||
         type == libkineto::ActivityType::GPU_MEMSET;
}

// An operator that starts and ends on the same thread: one that does not (async) nests in nothing there.
bool is_operator(const kineto::KinetoEvent& event) {
  return static_cast<libkineto::ActivityType>(event.activityType()) == libkineto::ActivityType::CPU_OP &&
         !event.isAsync();
}

// Each event's duration less the parts of it that events nested in it on its track take.
std::vector<double> self_times_ns(const std::vector<ProfiledEvent>& sorted) {
  std::vector<double> self(sorted.size());
  std::vector<size_t> open;  // the chain of events enclosing the current one
  for (size_t i = 0; i < sorted.size(); ++i) {
    const ProfiledEvent& event = sorted[i];
    self[i] = static_cast<double>(event.end_ns - event.start_ns);
    while (!open.empty() && (sorted[open.back()].track != event.track || sorted[open.back()].end_ns <= event.start_ns)) {
      open.pop_back();
    }
    if (!open.empty()) {
      const uint64_t nested_end = std::min(event.end_ns, sorted[open.back()].end_ns);
      self[open.back()] -= static_cast<double>(nested_end - event.start_ns);
    }
    open.push_back(i);
  }
  for (double& s : self) s = std::max(s, 0.0);
  return self;
}

// The length of the union of the events' intervals: time during which at least one of them ran.
double busy_ns(std::vector<ProfiledEvent> events) {
  std::sort(events.begin(), events.end(),
            [](const ProfiledEvent& a, const ProfiledEvent& b) { return a.start_ns < b.start_ns; });
  double busy = 0.0;
  uint64_t covered_until = 0;
  for (const ProfiledEvent& event : events) {
    const uint64_t from = std::max(event.start_ns, covered_until);
    if (event.end_ns > from) busy += static_cast<double>(event.end_ns - from);
    covered_until = std::max(covered_until, event.end_ns);
  }
  return busy;
}

}  // namespace

nlohmann::json summarize_profile(std::vector<ProfiledEvent> events, int64_t steps, size_t top) {
  if (steps <= 0) throw std::invalid_argument("summarize_profile: steps must be positive, got " + std::to_string(steps));
  for (ProfiledEvent& event : events) event.end_ns = std::max(event.end_ns, event.start_ns);
  // By track, then by start; of two events starting together the longer encloses the other.
  std::sort(events.begin(), events.end(), [](const ProfiledEvent& a, const ProfiledEvent& b) {
    if (a.track != b.track) return a.track < b.track;
    if (a.start_ns != b.start_ns) return a.start_ns < b.start_ns;
    return a.end_ns > b.end_ns;
  });
  const std::vector<double> self = self_times_ns(events);
  struct Totals {
    double self_ns = 0.0;
    int64_t calls = 0;
  };
  std::unordered_map<std::string, Totals> by_name;
  double self_total_ns = 0.0;
  for (size_t i = 0; i < events.size(); ++i) {
    Totals& totals = by_name[events[i].name];
    totals.self_ns += self[i];
    totals.calls += 1;
    self_total_ns += self[i];
  }
  std::vector<std::pair<std::string, Totals>> ranked(by_name.begin(), by_name.end());
  std::sort(ranked.begin(), ranked.end(), [](const auto& a, const auto& b) {
    return a.second.self_ns != b.second.self_ns ? a.second.self_ns > b.second.self_ns : a.first < b.first;
  });
  const double per_step_ms = 1e-6 / static_cast<double>(steps);
  nlohmann::json listed = nlohmann::json::array();
  double listed_ns = 0.0;
  for (size_t i = 0; i < std::min(top, ranked.size()); ++i) {
    const auto& [name, totals] = ranked[i];
    listed.push_back({{"name", name.size() > kMaxNameLength ? name.substr(0, kMaxNameLength) + "..." : name},
                      {"self_ms_per_step", totals.self_ns * per_step_ms},
                      {"calls_per_step", static_cast<double>(totals.calls) / static_cast<double>(steps)}});
    listed_ns += totals.self_ns;
  }
  return {{"steps", steps},
          {"events_per_step", static_cast<double>(events.size()) / static_cast<double>(steps)},
          {"distinct_names", by_name.size()},
          {"busy_ms_per_step", busy_ns(events) * per_step_ms},
          {"self_ms_per_step", self_total_ns * per_step_ms},
          {"top", listed},
          {"rest_self_ms_per_step", (self_total_ns - listed_ns) * per_step_ms}};
}

Profiler::Profiler(const torch::Device& device) : cuda_(device.is_cuda()) {
  const ProfilerConfig config(ProfilerState::KINETO);
  kineto::prepareProfiler(config, activities(cuda_));
  kineto::enableProfiler(config, activities(cuda_));
  running_ = true;
}

Profiler::~Profiler() {
  if (running_) kineto::disableProfiler();
}

std::vector<ProfiledEvent> Profiler::stop(const std::string& trace_path) {
  if (!running_) throw std::logic_error("Profiler::stop called twice");
  running_ = false;
  const std::unique_ptr<kineto::ProfilerResult> result = kineto::disableProfiler();
  if (!trace_path.empty()) result->save(trace_path);
  std::vector<ProfiledEvent> events;
  for (const kineto::KinetoEvent& event : result->events()) {
    if (cuda_ ? !is_device_work(event) : !is_operator(event)) continue;
    const uint64_t track = cuda_ ? static_cast<uint64_t>(event.deviceResourceId()) : event.startThreadId();
    events.push_back({event.name(), track, event.startNs(), event.endNs()});
  }
  return events;
}

}  // namespace ddpm
