#include "trainer/diffusion/respace.h"

#include <cmath>
#include <stdexcept>

namespace ddpm {
namespace {

int64_t parse_count(const std::string& text, const std::string& spec) {
  size_t used = 0;
  long long value = 0;
  try {
    value = std::stoll(text, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (text.empty() || used != text.size() || !std::isdigit(static_cast<unsigned char>(text[0]))) {
    throw std::invalid_argument("sampling steps '" + spec + "': '" + text +
                                "' is not a step count (expected N, a list N,N,... or ddimN)");
  }
  if (value < 1) throw std::invalid_argument("sampling steps '" + spec + "': a section needs at least 1 step, got " + text);
  return value;
}

std::vector<int64_t> ddim_stride(int64_t num_timesteps, int64_t desired, const std::string& spec) {
  for (int64_t stride = 1; stride < num_timesteps; ++stride) {
    if ((num_timesteps + stride - 1) / stride == desired) {  // len(range(0, T, stride))
      std::vector<int64_t> kept;
      for (int64_t t = 0; t < num_timesteps; t += stride) kept.push_back(t);
      return kept;
    }
  }
  throw std::invalid_argument("sampling steps '" + spec + "': no integer stride gives exactly " +
                              std::to_string(desired) + " of " + std::to_string(num_timesteps) + " steps");
}

}  // namespace

std::vector<int64_t> space_timesteps(int64_t num_timesteps, const std::string& spec) {
  std::vector<int64_t> all(static_cast<size_t>(num_timesteps));
  for (int64_t t = 0; t < num_timesteps; ++t) all[static_cast<size_t>(t)] = t;
  if (spec.empty()) return all;
  if (spec.rfind("ddim", 0) == 0) return ddim_stride(num_timesteps, parse_count(spec.substr(4), spec), spec);
  std::vector<int64_t> counts;
  for (size_t begin = 0;;) {
    const size_t comma = spec.find(',', begin);
    counts.push_back(parse_count(spec.substr(begin, comma == std::string::npos ? std::string::npos : comma - begin), spec));
    if (comma == std::string::npos) break;
    begin = comma + 1;
  }
  const int64_t sections = static_cast<int64_t>(counts.size());
  if (sections > num_timesteps) {
    throw std::invalid_argument("sampling steps '" + spec + "': " + std::to_string(sections) + " sections for " +
                                std::to_string(num_timesteps) + " steps");
  }
  const int64_t size_per = num_timesteps / sections;
  const int64_t extra = num_timesteps % sections;
  std::vector<int64_t> kept;
  int64_t start = 0;
  for (int64_t i = 0; i < sections; ++i) {
    const int64_t size = size_per + (i < extra ? 1 : 0);
    const int64_t count = counts[static_cast<size_t>(i)];
    if (size < count) {
      throw std::invalid_argument("sampling steps '" + spec + "': section " + std::to_string(i + 1) + " has " +
                                  std::to_string(size) + " steps, fewer than the " + std::to_string(count) + " asked");
    }
    // The reference accumulates a float stride and rounds with Python's round (half to even): nearbyint under the
    // default rounding mode does the same, so the kept steps match it exactly.
    const double stride = count <= 1 ? 1.0 : static_cast<double>(size - 1) / static_cast<double>(count - 1);
    double position = 0.0;
    for (int64_t k = 0; k < count; ++k) {
      kept.push_back(start + static_cast<int64_t>(std::nearbyint(position)));
      position += stride;
    }
    start += size;
  }
  return kept;  // increasing: each section's steps lie inside it, sections in order
}

GaussianDiffusion respace(const GaussianDiffusion& base, const std::vector<int64_t>& kept) {
  if (kept.size() < 2) throw std::invalid_argument("a respaced diffusion needs at least 2 steps, got " + std::to_string(kept.size()));
  const torch::Tensor alphas_cumprod = base.alphas_cumprod().cpu().contiguous();
  const torch::Tensor base_map = base.timestep_map().cpu().contiguous();
  const double* ac = alphas_cumprod.data_ptr<double>();
  const int64_t* original = base_map.data_ptr<int64_t>();
  std::vector<double> betas;
  std::vector<int64_t> timestep_map;
  double last = 1.0;
  int64_t previous = -1;
  for (const int64_t t : kept) {
    if (t <= previous || t >= base.num_timesteps()) {
      throw std::invalid_argument("respace: kept steps must increase within [0, " + std::to_string(base.num_timesteps()) +
                                  "), got " + std::to_string(t) + " after " + std::to_string(previous));
    }
    betas.push_back(1.0 - ac[t] / last);  // β_i = 1 − ᾱ_{s_i} / ᾱ_{s_{i−1}}, ᾱ_{s_0 − 1} = 1
    last = ac[t];
    timestep_map.push_back(original[t]);
    previous = t;
  }
  return GaussianDiffusion(betas, base.model_variance(), timestep_map, base.original_num_timesteps())
      .to(base.betas().device());
}

GaussianDiffusion respace(const GaussianDiffusion& base, const std::string& spec) {
  if (spec.empty()) return base;
  return respace(base, space_timesteps(base.num_timesteps(), spec));
}

}  // namespace ddpm
