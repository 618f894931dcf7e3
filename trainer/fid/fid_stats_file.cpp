#include "trainer/fid/fid_stats_file.h"

#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "trainer/fid/describe.h"

namespace ddpm {
namespace {

// The float64 array `key` of the archive as a CPU tensor of `rank` dimensions.
torch::Tensor float64_array(const std::map<std::string, NpyArray>& arrays, const std::string& path,
                            const std::string& key, size_t rank, const char* expected) {
  const auto found = arrays.find(key);
  if (found == arrays.end()) {
    std::string names;
    for (const auto& [name, array] : arrays) names += (names.empty() ? "" : ", ") + name;
    throw std::runtime_error(path + ": no array '" + key + "' (a statistics file holds mu and sigma; this one holds " +
                             (names.empty() ? std::string("no arrays") : names) + ")");
  }
  const NpyArray& array = found->second;
  if (array.dtype != NpyDtype::kFloat64 || array.shape.size() != rank) {
    throw std::runtime_error(path + ": '" + key + "' is " + npy_dtype_name(array.dtype) + " " + shape_text(array.shape) +
                             ", expected float64 " + expected);
  }
  torch::Tensor tensor = torch::empty(array.shape, torch::kFloat64);
  std::memcpy(tensor.data_ptr<double>(), array.bytes.data(), array.bytes.size());  // little-endian, as the host
  return tensor;
}

void write_array(NpzWriter& writer, const std::string& name, const torch::Tensor& tensor) {
  const torch::Tensor t = tensor.to(torch::kCPU, torch::kFloat64).contiguous();
  writer.begin(name, NpyDtype::kFloat64, std::vector<int64_t>(t.sizes().begin(), t.sizes().end()));
  writer.write(t.data_ptr<double>(), static_cast<size_t>(t.numel()) * sizeof(double));
  writer.end();
}

}  // namespace

void save_fid_statistics(const std::string& path, const FidStatistics& stats) {
  const int64_t d = stats.mu.size(0);
  if (stats.mu.dim() != 1 || stats.sigma.dim() != 2 || stats.sigma.size(0) != d || stats.sigma.size(1) != d) {
    throw std::logic_error("save_fid_statistics: mu and sigma are not [D] and [D, D]");
  }
  NpzWriter writer(path);
  write_array(writer, "mu", stats.mu);
  write_array(writer, "sigma", stats.sigma);
  if (stats.count >= 0) write_array(writer, "count", torch::scalar_tensor(static_cast<double>(stats.count), torch::kFloat64));
  writer.commit();
}

bool holds_fid_statistics(const std::vector<std::string>& names) {
  return std::any_of(names.begin(), names.end(), [](const std::string& name) { return name == "mu" || name == "sigma"; });
}

FidStatistics fid_statistics_from_npz(const std::map<std::string, NpyArray>& arrays, const std::string& path) {
  FidStatistics stats;
  stats.source = path;
  stats.mu = float64_array(arrays, path, "mu", 1, "[D]");
  stats.sigma = float64_array(arrays, path, "sigma", 2, "[D, D]");
  const int64_t d = stats.mu.size(0);
  if (stats.sigma.size(0) != d || stats.sigma.size(1) != d) {
    throw std::runtime_error(path + ": 'sigma' is " + shape_text(stats.sigma.sizes()) +
                             ", expected [" + std::to_string(d) + ", " + std::to_string(d) + "] to match 'mu' [" +
                             std::to_string(d) + "]");
  }
  if (d == 0) throw std::runtime_error(path + ": 'mu' is empty (D = 0)");
  // `count` is ddpm's own; other tools' files go without it (unknown), and a malformed one is refused.
  if (arrays.count("count") > 0) {
    const NpyArray& count = arrays.at("count");
    double value = -1.0;
    if (count.dtype == NpyDtype::kFloat64 && count.elements() == 1) std::memcpy(&value, count.bytes.data(), sizeof(double));
    if (!(value >= 0.0 && value < 9007199254740992.0) || std::floor(value) != value) {
      throw std::runtime_error(path + ": 'count' must be one float64 holding a whole number of images");
    }
    stats.count = static_cast<int64_t>(value);
  }
  return stats;
}

FidStatistics load_fid_statistics(const std::string& path) { return fid_statistics_from_npz(read_npz(path), path); }

}  // namespace ddpm
