#include "trainer/model/cpu_parallel.h"

#include <ATen/Parallel.h>
#include <ATen/ThreadLocalState.h>
#include <dlfcn.h>

#include <algorithm>
#include <exception>
#include <mutex>

namespace ddpm {

void parallel_chunks(int64_t n, const std::function<void(int64_t begin, int64_t end)>& f) {
  struct OpenMp {
    void (*parallel)(void (*)(void*), void*, unsigned, unsigned) = nullptr;  // GOMP_parallel(fn, data, threads, flags)
    int (*thread_num)() = nullptr;
    int (*num_threads)() = nullptr;
  };
  static const OpenMp omp = [] {
    OpenMp o;
    o.parallel = reinterpret_cast<decltype(o.parallel)>(dlsym(RTLD_DEFAULT, "GOMP_parallel"));
    o.thread_num = reinterpret_cast<decltype(o.thread_num)>(dlsym(RTLD_DEFAULT, "omp_get_thread_num"));
    o.num_threads = reinterpret_cast<decltype(o.num_threads)>(dlsym(RTLD_DEFAULT, "omp_get_num_threads"));
    if (!o.thread_num || !o.num_threads) o.parallel = nullptr;
    return o;
  }();
  const int64_t threads = std::min<int64_t>(at::get_num_threads(), n);
  if (threads <= 1 || omp.parallel == nullptr || at::in_parallel_region()) {
    if (n > 0) f(0, n);
    return;
  }
  struct Job {
    const std::function<void(int64_t, int64_t)>* f;
    int64_t n;
    at::ThreadLocalState state;  // grad mode, the profiler's callbacks: as on the calling thread
    std::mutex mutex;
    std::exception_ptr error;
  } job{&f, n, at::ThreadLocalState(), {}, nullptr};
  omp.parallel(
      [](void* data) {
        Job& j = *static_cast<Job*>(data);
        const int64_t thread = omp.thread_num(), team = omp.num_threads();
        const int64_t begin = j.n * thread / team, end = j.n * (thread + 1) / team;
        if (begin >= end) return;
        try {
          const at::ThreadLocalStateGuard guard(j.state);
          (*j.f)(begin, end);
        } catch (...) {
          const std::lock_guard<std::mutex> lock(j.mutex);
          if (!j.error) j.error = std::current_exception();
        }
      },
      &job, static_cast<unsigned>(threads), 0);
  if (job.error) std::rethrow_exception(job.error);
}

}  // namespace ddpm
