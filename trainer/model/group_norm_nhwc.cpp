#include "trainer/model/group_norm_nhwc.h"

#include <ATen/record_function.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "trainer/model/cpu_parallel.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define DDPM_X86_AVX512 1
#endif

namespace ddpm {
namespace {

// out[c] = Σ_p (x[p, c] − m[c])^k over an image's pixels, k = 1 (m null: no offset) or 2: float sums over blocks of
// pixels added up in float64, so the error stays that of a few dozen float additions whatever the image size.
constexpr int64_t kSumBlock = 64;

void channel_sums_scalar(const float* x, int64_t pixels, int64_t channels, const float* m, bool square, double* out) {
  std::vector<float> partial(static_cast<size_t>(channels));
  for (int64_t c = 0; c < channels; ++c) out[c] = 0.0;
  for (int64_t p0 = 0; p0 < pixels; p0 += kSumBlock) {
    std::fill(partial.begin(), partial.end(), 0.0f);
    for (int64_t p = p0; p < std::min(pixels, p0 + kSumBlock); ++p) {
      const float* row = x + p * channels;
      for (int64_t c = 0; c < channels; ++c) {
        const float d = m ? row[c] - m[c] : row[c];
        partial[c] += square ? d * d : d;
      }
    }
    for (int64_t c = 0; c < channels; ++c) out[c] += static_cast<double>(partial[c]);
  }
}

#ifdef DDPM_X86_AVX512
// GCC 12 warns about the intrinsics' own _mm512_undefined_ps() (a false positive).
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
// The same for channels a multiple of 16, 16 channels a vector.
__attribute__((target("avx512f"))) void channel_sums_avx512(const float* x, int64_t pixels, int64_t channels,
                                                            const float* m, bool square, double* out) {
  for (int64_t c = 0; c < channels; ++c) out[c] = 0.0;
  for (int64_t c = 0; c < channels; c += 16) {
    const __m512 offset = m ? _mm512_loadu_ps(m + c) : _mm512_setzero_ps();
    __m512d lo = _mm512_setzero_pd(), hi = _mm512_setzero_pd();
    for (int64_t p0 = 0; p0 < pixels; p0 += kSumBlock) {
      __m512 acc = _mm512_setzero_ps();
      const int64_t p1 = std::min(pixels, p0 + kSumBlock);
      if (square) {
        for (int64_t p = p0; p < p1; ++p) {
          const __m512 d = _mm512_sub_ps(_mm512_loadu_ps(x + p * channels + c), offset);
          acc = _mm512_fmadd_ps(d, d, acc);
        }
      } else {
        for (int64_t p = p0; p < p1; ++p) acc = _mm512_add_ps(acc, _mm512_sub_ps(_mm512_loadu_ps(x + p * channels + c), offset));
      }
      lo = _mm512_add_pd(lo, _mm512_cvtps_pd(_mm512_castps512_ps256(acc)));
      hi = _mm512_add_pd(hi, _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(acc), 1))));
    }
    _mm512_storeu_pd(out + c, lo);
    _mm512_storeu_pd(out + c + 8, hi);
  }
}
#pragma GCC diagnostic pop

bool has_avx512() {
  static const bool yes = __builtin_cpu_supports("avx512f");
  return yes;
}
#endif

void channel_sums(const float* x, int64_t pixels, int64_t channels, const float* m, bool square, double* out) {
#ifdef DDPM_X86_AVX512
  if (channels % 16 == 0 && has_avx512()) return channel_sums_avx512(x, pixels, channels, m, square, out);
#endif
  channel_sums_scalar(x, pixels, channels, m, square, out);
}

// Per image: the groups' means of x + bias, then the sums of squared deviations from them (two passes: exact
// enough whatever the offset), then scale and shift per channel so that y = x·scale + shift is the normalized,
// affine-transformed x + bias.
void group_norm_statistics(const float* x, const float* bias, int64_t pixels, int64_t channels, int64_t groups,
                           double eps, const float* weight, const float* shift, float* scale_out, float* shift_out) {
  const int64_t per_group = channels / groups;
  std::vector<double> sums(static_cast<size_t>(channels)), squares(static_cast<size_t>(channels));
  std::vector<double> mean(static_cast<size_t>(channels));
  std::vector<float> offset(static_cast<size_t>(channels));
  channel_sums(x, pixels, channels, nullptr, false, sums.data());
  const double count = static_cast<double>(per_group * pixels), n = static_cast<double>(pixels);
  for (int64_t g = 0; g < groups; ++g) {
    double total = 0.0;
    for (int64_t c = g * per_group; c < (g + 1) * per_group; ++c) {
      total += sums[c] + (bias ? static_cast<double>(bias[c]) * n : 0.0);
    }
    for (int64_t c = g * per_group; c < (g + 1) * per_group; ++c) {
      mean[c] = total / count - (bias ? static_cast<double>(bias[c]) : 0.0);  // the group's mean, less the bias
      offset[c] = static_cast<float>(mean[c]);
    }
  }
  channel_sums(x, pixels, channels, offset.data(), true, squares.data());
  for (int64_t g = 0; g < groups; ++g) {
    // The deviations were taken from m' = m rounded to float: Σ (x − m)² = Σ (x − m')² − 2δ Σ (x − m) − n δ²,
    // δ = m − m'.
    double total = 0.0;
    for (int64_t c = g * per_group; c < (g + 1) * per_group; ++c) {
      const double delta = mean[c] - static_cast<double>(offset[c]);
      total += squares[c] - 2.0 * delta * (sums[c] - n * mean[c]) - n * delta * delta;
    }
    const double rstd = 1.0 / std::sqrt(std::max(total / count, 0.0) + eps);
    for (int64_t c = g * per_group; c < (g + 1) * per_group; ++c) {
      // (x + b − μ_g) · rstd · γ + β = x · scale + shift
      const double a = rstd * static_cast<double>(weight[c]);
      scale_out[c] = static_cast<float>(a);
      shift_out[c] = static_cast<float>(static_cast<double>(shift[c]) - mean[c] * a);
    }
  }
}

void affine_rows_scalar(const float* x, float* y, int64_t pixels, int64_t channels, const float* scale,
                        const float* shift, bool silu) {
  for (int64_t p = 0; p < pixels; ++p) {
    const float* in = x + p * channels;
    float* out = y + p * channels;
    for (int64_t c = 0; c < channels; ++c) {
      const float v = in[c] * scale[c] + shift[c];
      out[c] = silu ? v / (1.0f + std::exp(-v)) : v;
    }
  }
}

#ifdef DDPM_X86_AVX512
// GCC 12 warns about the intrinsics' own _mm512_undefined_ps() (a false positive).
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
// e^x for float32 lanes: Cody–Waite reduction by ln 2 and Cephes' degree-6 polynomial (about 1 ulp), x clamped to
// where e^x is a normal float; scalef applies the power of two.
__attribute__((target("avx512f"))) inline __m512 exp_avx512(__m512 x) {
  x = _mm512_min_ps(_mm512_max_ps(x, _mm512_set1_ps(-87.3f)), _mm512_set1_ps(88.3f));
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
  __m512 p = _mm512_set1_ps(1.9875691500e-4f);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
  p = _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
  return _mm512_scalef_ps(p, n);
}

__attribute__((target("avx512f"))) void affine_rows_avx512(const float* x, float* y, int64_t pixels, int64_t channels,
                                                           const float* scale, const float* shift, bool silu) {
  const __m512 one = _mm512_set1_ps(1.0f);
  if (channels % 16 == 0) {
    for (int64_t p = 0; p < pixels; ++p) {
      const float* in = x + p * channels;
      float* out = y + p * channels;
      for (int64_t c = 0; c < channels; c += 16) {
        __m512 v = _mm512_fmadd_ps(_mm512_loadu_ps(in + c), _mm512_loadu_ps(scale + c), _mm512_loadu_ps(shift + c));
        if (silu) v = _mm512_div_ps(v, _mm512_add_ps(one, exp_avx512(_mm512_sub_ps(_mm512_setzero_ps(), v))));
        _mm512_storeu_ps(out + c, v);
      }
    }
    return;
  }
  affine_rows_scalar(x, y, pixels, channels, scale, shift, silu);  // few channels (never a norm's)
}

#pragma GCC diagnostic pop
#endif

}  // namespace

torch::Tensor group_norm_nhwc(const torch::Tensor& x_in, const torch::Tensor& bias, const torch::Tensor& weight,
                              const torch::Tensor& shift, int64_t groups, double eps, bool silu) {
  RECORD_FUNCTION("ddpm::group_norm_nhwc", std::vector<c10::IValue>());  // named in profiles
  TORCH_CHECK(x_in.dim() == 4 && x_in.scalar_type() == torch::kFloat32 && x_in.device().is_cpu(),
              "group_norm_nhwc: float32 [N, C, H, W] on the CPU, got ", x_in.sizes(), " ", x_in.scalar_type());
  const int64_t batch = x_in.size(0), channels = x_in.size(1), pixels = x_in.size(2) * x_in.size(3);
  TORCH_CHECK(channels % groups == 0, "group_norm_nhwc: ", channels, " channels in ", groups, " groups");
  const torch::Tensor x = x_in.contiguous(torch::MemoryFormat::ChannelsLast);
  const torch::Tensor gamma = weight.contiguous(), beta = shift.contiguous();
  torch::Tensor b;
  if (bias.defined()) {
    TORCH_CHECK(bias.dim() == 2 && bias.size(0) == batch && bias.size(1) == channels, "group_norm_nhwc: bias ",
                bias.sizes(), " for ", x_in.sizes());
    b = bias.stride(1) == 1 ? bias : bias.contiguous();
  }
  torch::Tensor y = torch::empty_like(x, torch::MemoryFormat::ChannelsLast);
  const float* xp = x.data_ptr<float>();
  float* yp = y.data_ptr<float>();
  const auto norm_images = [&](int64_t begin, int64_t end) {
    std::vector<float> scale(static_cast<size_t>(channels)), offset(static_cast<size_t>(channels));
    for (int64_t n = begin; n < end; ++n) {
      const float* xn = xp + n * pixels * channels;
      float* yn = yp + n * pixels * channels;
      const float* bn = b.defined() ? b.data_ptr<float>() + n * b.stride(0) : nullptr;
      group_norm_statistics(xn, bn, pixels, channels, groups, eps, gamma.data_ptr<float>(), beta.data_ptr<float>(),
                            scale.data(), offset.data());
#ifdef DDPM_X86_AVX512
      if (has_avx512()) {
        affine_rows_avx512(xn, yn, pixels, channels, scale.data(), offset.data(), silu);
        continue;
      }
#endif
      affine_rows_scalar(xn, yn, pixels, channels, scale.data(), offset.data(), silu);
    }
  };
  if (batch * pixels * channels < 16384) {
    norm_images(0, batch);  // too little to share
  } else {
    parallel_chunks(batch, norm_images);
  }
  return y;
}

}  // namespace ddpm
