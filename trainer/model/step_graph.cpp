#include "trainer/model/step_graph.h"

#include "distributed/sync_check.h"

#include <ATen/autocast_mode.h>

#include <stdexcept>
#include <string>

#ifdef DDPM_WITH_CUDA
#include <ATen/cuda/CUDAContext.h>
#include <ATen/cuda/CUDAEvent.h>
#include <ATen/cuda/CUDAGraph.h>
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAFunctions.h>
#include <c10/cuda/CUDAGuard.h>
#endif

namespace ddpm {

#ifdef DDPM_WITH_CUDA
namespace {

// Autocast keeps the bf16 copies of the weights it made in a cache until the outermost autocast scope ends;
// PyTorch requires the cache off around a capture (a cached copy made outside the graph would be read by it
// after its memory was reused). Off for the eager steps too, so that they run what the graph runs.
class AutocastCacheOff {
 public:
  AutocastCacheOff() : was_enabled_(at::autocast::is_autocast_cache_enabled()) {
    at::autocast::set_autocast_cache_enabled(false);
  }
  ~AutocastCacheOff() { at::autocast::set_autocast_cache_enabled(was_enabled_); }
  AutocastCacheOff(const AutocastCacheOff&) = delete;
  AutocastCacheOff& operator=(const AutocastCacheOff&) = delete;

 private:
  const bool was_enabled_;
};

}  // namespace

struct StepGraph::Impl {
  Impl(c10::DeviceIndex index, int64_t eager) : device(index), stream(at::cuda::getStreamFromPool(false, index)), eager_steps(eager) {}

  void capture(const std::function<void()>& enqueue) {
    // The eager steps left a step's worth of memory cached in the general pool, which a capture cannot reuse (it
    // allocates from its own pool, and nothing is released while it runs): hand it back first, as
    // torch.cuda.graph does, or the capture needs twice the memory of a step.
    {
      const SyncCheckExempt once;  // the capture's one wait for the device, not one per step
      c10::cuda::device_synchronize();
      c10::cuda::CUDACachingAllocator::emptyCache();
    }
    // Thread-local: the data loader's threads keep copying batches, and the pinned-memory allocator keeps querying
    // its events, while this thread captures; global mode would make those calls fail the capture.
    graph.capture_begin({0, 0}, cudaStreamCaptureModeThreadLocal);
    try {
      enqueue();
    } catch (const std::exception& e) {
      try {
        graph.capture_end();
      } catch (const std::exception&) {
        // The capture is already broken; the first error is the one to report.
      }
      throw std::runtime_error(std::string("capturing a step in a CUDA graph failed (train.cuda_graph: false runs "
                                           "without one): ") + e.what());
    }
    graph.capture_end();
    captured = true;
  }

  const c10::DeviceIndex device;
  const at::cuda::CUDAStream stream;
  at::cuda::CUDAGraph graph;
  const int64_t eager_steps;
  int64_t steps = 0;
  bool captured = false;
};

StepGraph::StepGraph(const torch::Device& device, int64_t eager_steps) {
  if (!device.is_cuda()) {
    throw std::runtime_error("train.cuda_graph: true needs a CUDA device; this run is on " + device.str());
  }
  impl_ = std::make_unique<Impl>(device.has_index() ? device.index() : at::cuda::current_device(), eager_steps);
}

void StepGraph::run(const std::function<void()>& enqueue) {
  Impl& s = *impl_;
  const at::cuda::CUDAStream current = at::cuda::getCurrentCUDAStream(s.device);
  at::cuda::CUDAEvent inputs_ready;
  inputs_ready.record(current);
  inputs_ready.block(s.stream);
  {
    const c10::cuda::CUDAStreamGuard on_side_stream(s.stream);
    const AutocastCacheOff no_cache;
    if (s.steps < s.eager_steps) {
      enqueue();
    } else {
      if (!s.captured) s.capture(enqueue);  // capturing runs nothing: the replay below does the step
      s.graph.replay();
    }
  }
  ++s.steps;
  at::cuda::CUDAEvent done;
  done.record(s.stream);
  done.block(current);
}

#else

struct StepGraph::Impl {};

StepGraph::StepGraph(const torch::Device& device, int64_t /*eager_steps*/) {
  throw std::runtime_error("train.cuda_graph: true needs a CUDA device and a CUDA build of ddpm; this run is on " +
                           device.str());
}

void StepGraph::run(const std::function<void()>& enqueue) { enqueue(); }

#endif

StepGraph::~StepGraph() = default;

}  // namespace ddpm
