// All-reduce benchmark in the style of nccl-tests: for message sizes 1 KiB .. 256 MiB (float32), the time per
// all-reduce through our Communicator, algorithm bandwidth (bytes / time) and bus bandwidth
// busbw = algbw · 2(n-1)/n, the figure comparable across world sizes (the ring's per-link traffic).
//   mpirun -np N bench_allreduce [--backend mpi|nccl] [--max-mib 256] [--min-seconds 0.2]
#include <mpi.h>

#include <cstdio>
#include <cstdlib>
#include <string>

#include "distributed/communicator.h"
#include "distributed/mpi_context.h"

int main(int argc, char** argv) {
  ddpm::MpiContext mpi(&argc, &argv);
  std::string backend = "mpi";
  int64_t max_mib = 256;
  double min_seconds = 0.2;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i];
    if (flag == "--backend") backend = argv[i + 1];
    else if (flag == "--max-mib") max_mib = std::atoll(argv[i + 1]);
    else if (flag == "--min-seconds") min_seconds = std::atof(argv[i + 1]);
  }
  try {
    const ddpm::CommBackend chosen = ddpm::parse_comm_backend(backend);
    const torch::Device device = chosen == ddpm::CommBackend::kNccl
                                     ? torch::Device(torch::kCUDA, static_cast<c10::DeviceIndex>(mpi.local_rank()))
                                     : torch::Device(torch::kCPU);
    const auto comm = ddpm::make_communicator(mpi, chosen, device);
    const int n = mpi.world_size();
    if (mpi.rank() == 0) {
      std::printf("# all-reduce (sum, float32), backend %s, %d ranks\n", backend.c_str(), n);
      std::printf("%12s %10s %12s %12s %12s\n", "bytes", "iters", "time (us)", "algbw GB/s", "busbw GB/s");
    }
    for (int64_t bytes = 1024; bytes <= max_mib * 1024 * 1024; bytes *= 4) {
      torch::Tensor buffer = torch::ones({bytes / 4}, torch::TensorOptions().dtype(torch::kFloat32).device(device));
      for (int warmup = 0; warmup < 3; ++warmup) comm->all_reduce_sum(buffer);
      comm->synchronize();
      // Iterations until min_seconds have passed on rank 0, agreed by broadcast so all ranks run the same count.
      int64_t iterations = 1;
      double elapsed = 0.0;
      while (true) {
        MPI_Barrier(mpi.comm());
        const double start = MPI_Wtime();
        for (int64_t k = 0; k < iterations; ++k) comm->all_reduce_sum(buffer);
        comm->synchronize();
        elapsed = MPI_Wtime() - start;
        int more = elapsed < min_seconds && iterations < (1 << 20) ? 1 : 0;
        MPI_Bcast(&more, 1, MPI_INT, 0, mpi.comm());
        if (!more) break;
        iterations *= 2;
      }
      const double seconds = elapsed / static_cast<double>(iterations);
      const double algbw = static_cast<double>(bytes) / seconds / 1e9;
      const double busbw = algbw * 2.0 * (n - 1) / n;
      if (mpi.rank() == 0) {
        std::printf("%12lld %10lld %12.1f %12.3f %12.3f\n", static_cast<long long>(bytes), static_cast<long long>(iterations),
                    seconds * 1e6, algbw, busbw);
      }
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_allreduce: %s\n", e.what());
    MPI_Abort(MPI_COMM_WORLD, 1);
  }
  return 0;
}
