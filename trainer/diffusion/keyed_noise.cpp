#include "trainer/diffusion/keyed_noise.h"

#include <utility>

#include "data/splitmix64.h"

namespace ddpm {
namespace {

constexpr int64_t as_signed(uint64_t value) { return static_cast<int64_t>(value); }
constexpr int64_t kGolden = as_signed(0x9e3779b97f4a7c15ULL);
constexpr double kPi = 3.14159265358979323846;
constexpr int64_t kTimestepStream = as_signed(0xd1b54a32d192ed03ULL);

// x >> k on the 64 bits as unsigned: torch shifts int64 arithmetically, so mask the sign copies away.
torch::Tensor shift_right_logical(const torch::Tensor& x, int64_t k) {
  return torch::bitwise_and(torch::bitwise_right_shift(x, k), as_signed((~0ULL) >> k));
}

// The top 53 bits as a double in [0, 1).
torch::Tensor unit_interval(const torch::Tensor& bits) {
  return shift_right_logical(bits, 11).to(torch::kFloat64) * 0x1.0p-53;
}

}  // namespace

torch::Tensor splitmix64_mix(const torch::Tensor& z0) {
  torch::Tensor z = torch::bitwise_xor(z0, shift_right_logical(z0, 30)) * as_signed(0xbf58476d1ce4e5b9ULL);
  z = torch::bitwise_xor(z, shift_right_logical(z, 27)) * as_signed(0x94d049bb133111ebULL);
  return torch::bitwise_xor(z, shift_right_logical(z, 31));
}

namespace {

// One key per image: a bijective mix of (key, index), so distinct indices never share a stream. `key`: a 0-d
// int64 tensor.
torch::Tensor image_keys(const torch::Tensor& key, const torch::Tensor& indices) {
  return splitmix64_mix(indices.to(torch::kLong) * kGolden + key);
}

torch::Tensor key_tensor(uint64_t key, const torch::Tensor& like) {
  return torch::full({}, as_signed(key), like.options().dtype(torch::kLong));
}

// The two uniforms of each element, u1 in (0, 1] and u2 in [0, 1), float64 [B, elements]: element j of an image
// uses counters 2j+1 and 2j+2 of its key's Weyl sequence.
std::pair<torch::Tensor, torch::Tensor> uniforms(const torch::Tensor& key, const torch::Tensor& indices, int64_t elements) {
  const torch::Tensor keys = image_keys(key, indices);  // [B]
  const torch::Tensor j = torch::arange(elements, indices.options().dtype(torch::kLong));
  const torch::Tensor counters = keys.unsqueeze(1) + (2 * j + 1).unsqueeze(0) * kGolden;  // [B, elements]
  return {1.0 - unit_interval(splitmix64_mix(counters)),  // (0, 1]: log(u1) finite
          unit_interval(splitmix64_mix(counters + kGolden))};
}

// The same on the host in plain 64-bit integers: the same integers, so the same doubles bit for bit (every step
// of the tensor form is exact: wrapping products and sums, shifts, a 53-bit integer scaled by a power of two,
// 1 − u), in one pass instead of some forty tensor operations.
std::pair<torch::Tensor, torch::Tensor> uniforms_on_host(uint64_t key, const torch::Tensor& indices, int64_t elements) {
  const torch::Tensor index = indices.to(torch::kLong).contiguous();
  const int64_t batch = index.numel();
  const auto options = torch::TensorOptions().dtype(torch::kFloat64);
  torch::Tensor u1 = torch::empty({batch, elements}, options), u2 = torch::empty({batch, elements}, options);
  const uint64_t golden = static_cast<uint64_t>(kGolden);
  const int64_t* in = index.data_ptr<int64_t>();
  double* p1 = u1.data_ptr<double>();
  double* p2 = u2.data_ptr<double>();
  for (int64_t b = 0; b < batch; ++b) {
    const uint64_t image = splitmix64_mix(static_cast<uint64_t>(in[b]) * golden + key);
    uint64_t counter = image + golden;  // counter 2j+1 of element j
    for (int64_t e = 0; e < elements; ++e, counter += 2 * golden) {
      p1[b * elements + e] = 1.0 - static_cast<double>(splitmix64_mix(counter) >> 11) * 0x1.0p-53;
      p2[b * elements + e] = static_cast<double>(splitmix64_mix(counter + golden) >> 11) * 0x1.0p-53;
    }
  }
  return {u1, u2};
}

bool on_host(KeyedCompute compute, const torch::Tensor& a, const torch::Tensor& b) {
  return compute == KeyedCompute::kAuto && a.device().is_cpu() && b.device().is_cpu();
}

torch::Tensor normal_from_keys(const torch::Tensor& key, const torch::Tensor& indices, c10::IntArrayRef item_shape,
                               torch::ScalarType dtype, KeyedCompute compute) {
  int64_t elements = 1;
  for (const int64_t d : item_shape) elements *= d;
  const auto [u1, u2] = on_host(compute, key, indices)
                            ? uniforms_on_host(static_cast<uint64_t>(key.item<int64_t>()), indices, elements)
                            : uniforms(key, indices, elements);
  const torch::Tensor normal = torch::sqrt(-2.0 * torch::log(u1)) * torch::cos((2.0 * kPi) * u2);  // Box–Muller
  std::vector<int64_t> shape = {indices.size(0)};
  shape.insert(shape.end(), item_shape.begin(), item_shape.end());
  return normal.to(dtype).reshape(shape);
}

}  // namespace

torch::Tensor hash_combine_on_device(uint64_t a, const torch::Tensor& b, KeyedCompute compute) {
  constexpr int64_t kSalt = as_signed(0x632be59bd9b4e019ULL);
  if (on_host(compute, b, b)) {  // on the host the scalar definition itself, element by element
    const torch::Tensor in = b.to(torch::kLong).contiguous();
    torch::Tensor out = torch::empty_like(in);
    for (int64_t i = 0; i < in.numel(); ++i) {
      out.data_ptr<int64_t>()[i] = as_signed(hash_combine(a, static_cast<uint64_t>(in.data_ptr<int64_t>()[i])));
    }
    return out;
  }
  return splitmix64_mix(splitmix64_mix(torch::bitwise_xor(b.to(torch::kLong), kSalt)) + kGolden + as_signed(a));
}

torch::Tensor keyed_normal(uint64_t key, const torch::Tensor& indices, c10::IntArrayRef item_shape, torch::ScalarType dtype) {
  torch::NoGradGuard no_grad;
  return normal_from_keys(key_tensor(key, indices), indices, item_shape, dtype, KeyedCompute::kAuto);
}

torch::Tensor keyed_normal(const torch::Tensor& key, const torch::Tensor& indices, c10::IntArrayRef item_shape,
                           torch::ScalarType dtype, KeyedCompute compute) {
  torch::NoGradGuard no_grad;
  return normal_from_keys(key, indices, item_shape, dtype, compute);
}

KeyedDraws keyed_timesteps_and_noise(uint64_t seed, int64_t step, const torch::Tensor& indices, c10::IntArrayRef item_shape,
                                     int64_t num_timesteps, torch::ScalarType dtype) {
  torch::NoGradGuard no_grad;
  return keyed_timesteps_and_noise(seed, key_tensor(static_cast<uint64_t>(step), indices), indices, item_shape,
                                   num_timesteps, dtype);
}

KeyedDraws keyed_timesteps_and_noise(uint64_t seed, const torch::Tensor& step, const torch::Tensor& indices,
                                     c10::IntArrayRef item_shape, int64_t num_timesteps, torch::ScalarType dtype) {
  torch::NoGradGuard no_grad;
  const torch::Tensor key = hash_combine_on_device(seed, step);
  KeyedDraws draws;
  // 53 random bits scaled to [0, T): the bias of the floor is below T / 2^53.
  const torch::Tensor bits = splitmix64_mix(torch::bitwise_xor(image_keys(key, indices), kTimestepStream));
  draws.u = unit_interval(bits);
  draws.t = torch::floor(draws.u * static_cast<double>(num_timesteps)).to(torch::kLong);
  draws.noise = normal_from_keys(key, indices, item_shape, dtype, KeyedCompute::kAuto);
  return draws;
}

}  // namespace ddpm
