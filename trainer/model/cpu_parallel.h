#pragma once

#include <cstdint>
#include <functional>

namespace ddpm {

// f over [0, n) in chunks, one per thread, on the OpenMP threads LibTorch's own operators run on. Not
// at::parallel_for: it is a header template whose `#pragma omp parallel` needs this file compiled with -fopenmp,
// which the project is not (ATen's operators are; so without it the loop silently runs on one thread). So the
// OpenMP runtime LibTorch loaded (libgomp) is called as that pragma would call it; where it is not there, the
// loop runs on the calling thread. Inside, ATen's and oneDNN's operators see a parallel region and run serially.
void parallel_chunks(int64_t n, const std::function<void(int64_t begin, int64_t end)>& f);

}  // namespace ddpm
