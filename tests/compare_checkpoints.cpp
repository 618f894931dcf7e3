// compare_checkpoints A B [--prefix P] [--atol X] [--rtol Y]: compares the tensors whose names start with P
// (default "model/") of two checkpoint files; prints the largest difference and exits 0 when every element
// satisfies |a - b| <= atol + rtol |b| (both 0, the default: bit-identical). NaN equals NaN at the same position;
// a NaN or an infinity facing anything else is a difference. `compare_checkpoints A A` verifies A. Used by the
// test scripts (through tests/lib.sh: compare_ckpt, verify_ckpt). Exit codes:
//   0  equal: at least one tensor compared, every element within the tolerance
//   1  different: an element outside the tolerance, or a P* tensor of one file missing or of another shape in the
//      other
//   2  usage error: a wrong number of arguments, an unknown flag, a flag without its value, a value that is not a
//      number (or negative), no tensor of A whose name starts with P, an error while comparing
//   3  a file cannot be read or does not verify (missing, not a checkpoint, truncated, checksum mismatch)
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <string>

#include "trainer/checkpoint/checkpoint.h"

namespace {

constexpr int kEqual = 0, kDifferent = 1, kUsage = 2, kUnreadable = 3;
constexpr const char* kUsageLine = "usage: compare_checkpoints A B [--prefix P] [--atol X] [--rtol Y]";

int usage_error(const std::string& what) {
  std::fprintf(stderr, "compare_checkpoints: %s\n%s\n", what.c_str(), kUsageLine);
  return kUsage;
}

// A whole argument as a finite, non-negative number (strtod, nothing left over); false otherwise.
bool parse_tolerance(const char* text, double* value) {
  errno = 0;
  char* end = nullptr;
  const double parsed = std::strtod(text, &end);
  if (end == text || *end != '\0' || errno == ERANGE || !std::isfinite(parsed) || parsed < 0.0) return false;
  *value = parsed;
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) return usage_error("expected two checkpoint files, got " + std::to_string(argc - 1) + " argument(s)");
  const std::string path_a = argv[1], path_b = argv[2];
  if (path_a.rfind("--", 0) == 0 || path_b.rfind("--", 0) == 0) {
    return usage_error("the first two arguments must be the checkpoint files, got '" + path_a + "' '" + path_b + "'");
  }
  std::string prefix = "model/";
  double atol = 0.0, rtol = 0.0;
  for (int i = 3; i < argc; i += 2) {
    const std::string flag = argv[i];
    if (flag != "--prefix" && flag != "--atol" && flag != "--rtol") {
      return usage_error("unknown argument '" + flag + "'");
    }
    if (i + 1 >= argc) return usage_error("'" + flag + "' needs a value");
    const char* value = argv[i + 1];
    if (flag == "--prefix") {
      prefix = value;
    } else if (!parse_tolerance(value, flag == "--atol" ? &atol : &rtol)) {
      return usage_error("'" + flag + " " + value + "': expected a finite non-negative number");
    }
  }
  ddpm::Checkpoint a, b;
  try {
    a = ddpm::read_checkpoint(path_a);
    b = ddpm::read_checkpoint(path_b);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "compare_checkpoints: %s\n", e.what());
    return kUnreadable;
  }
  try {
    double worst = 0.0;
    std::string worst_name;
    int64_t compared = 0, bad = 0;
    for (const auto& [name, ta] : a.tensors) {
      if (name.rfind(prefix, 0) != 0) continue;
      const auto found = b.tensors.find(name);
      if (found == b.tensors.end() || found->second.sizes() != ta.sizes()) {
        std::printf("%s: missing or of another shape in %s\n", name.c_str(), path_b.c_str());
        return kDifferent;
      }
      const torch::Tensor x = ta.to(torch::kFloat64), y = found->second.to(torch::kFloat64);
      // Equal values (infinities included) and NaN facing NaN count as the same; a NaN or an infinity facing
      // anything else is an infinite difference, outside any tolerance (|a - b| is NaN there, which a plain
      // `|a - b| > tolerance` counts as within, and max() would report as NaN).
      const torch::Tensor same = (x == y) | (torch::isnan(x) & torch::isnan(y));
      constexpr double kInf = std::numeric_limits<double>::infinity();
      const torch::Tensor diff =
          torch::where(same, torch::zeros_like(x), torch::nan_to_num((x - y).abs(), kInf, kInf, kInf));
      const torch::Tensor within = same | (torch::isfinite(diff) & (diff <= atol + rtol * y.abs()));
      const double max_diff = diff.numel() == 0 ? 0.0 : diff.max().item<double>();
      if (max_diff > worst) {
        worst = max_diff;
        worst_name = name;
      }
      bad += torch::logical_not(within).sum().item<int64_t>();
      ++compared;
    }
    for (const auto& item : b.tensors) {
      if (item.first.rfind(prefix, 0) == 0 && a.tensors.count(item.first) == 0) {
        std::printf("%s: missing in %s\n", item.first.c_str(), path_a.c_str());
        return kDifferent;
      }
    }
    if (compared == 0) {
      return usage_error("no tensor of " + path_a + " has a name starting with '" + prefix + "': nothing to compare");
    }
    std::printf("compared %lld tensors '%s*', max |a-b| = %.3g (%s), %lld elements outside tolerance\n",
                static_cast<long long>(compared), prefix.c_str(), worst, worst_name.c_str(), static_cast<long long>(bad));
    return bad == 0 ? kEqual : kDifferent;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "compare_checkpoints: comparing %s and %s: %s\n", path_a.c_str(), path_b.c_str(), e.what());
    return kUsage;
  }
}
