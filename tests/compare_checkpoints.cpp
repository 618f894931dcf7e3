// compare_checkpoints A B [--prefix P] [--atol X] [--rtol Y]: compares the tensors whose names start with P
// (default "model/") of two checkpoint files; prints the largest difference and exits 0 when every element
// satisfies |a - b| <= atol + rtol |b| (both 0, the default: bit-identical). Used by the MPI test scripts.
#include <cstdio>
#include <cstdlib>
#include <string>

#include "trainer/checkpoint.h"

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: compare_checkpoints A B [--prefix P] [--atol X] [--rtol Y]\n");
    return 2;
  }
  std::string prefix = "model/";
  double atol = 0.0, rtol = 0.0;
  for (int i = 3; i + 1 < argc; i += 2) {
    const std::string flag = argv[i];
    if (flag == "--prefix") prefix = argv[i + 1];
    else if (flag == "--atol") atol = std::atof(argv[i + 1]);
    else if (flag == "--rtol") rtol = std::atof(argv[i + 1]);
    else {
      std::fprintf(stderr, "unknown flag %s\n", flag.c_str());
      return 2;
    }
  }
  try {
    const ddpm::Checkpoint a = ddpm::read_checkpoint(argv[1]);
    const ddpm::Checkpoint b = ddpm::read_checkpoint(argv[2]);
    double worst = 0.0;
    std::string worst_name;
    int64_t compared = 0, bad = 0;
    for (const auto& [name, ta] : a.tensors) {
      if (name.rfind(prefix, 0) != 0) continue;
      const auto found = b.tensors.find(name);
      if (found == b.tensors.end() || found->second.sizes() != ta.sizes()) {
        std::printf("%s: missing or of another shape in %s\n", name.c_str(), argv[2]);
        return 1;
      }
      const torch::Tensor x = ta.to(torch::kFloat64), y = found->second.to(torch::kFloat64);
      const torch::Tensor diff = (x - y).abs();
      const double max_diff = diff.max().item<double>();
      if (max_diff > worst) {
        worst = max_diff;
        worst_name = name;
      }
      bad += (diff > atol + rtol * y.abs()).sum().item<int64_t>();
      ++compared;
    }
    std::printf("compared %lld tensors '%s*', max |a-b| = %.3g (%s), %lld elements outside tolerance\n",
                static_cast<long long>(compared), prefix.c_str(), worst, worst_name.c_str(), static_cast<long long>(bad));
    return compared > 0 && bad == 0 ? 0 : 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 2;
  }
}
