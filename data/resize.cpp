#include "data/resize.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>

namespace ddpm {
namespace {

uint8_t clamp_round(double value) {
  return static_cast<uint8_t>(std::clamp(std::floor(value + 0.5), 0.0, 255.0));
}

double bicubic_kernel(double x) {
  constexpr double a = -0.5;
  x = std::abs(x);
  if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0;
  if (x < 2.0) return (((x - 5.0) * x + 8.0) * x - 4.0) * a;
  return 0.0;
}

// For each output position, the first input index and normalized weights, as PIL's precompute_coeffs.
struct Taps {
  std::vector<int64_t> first;
  std::vector<std::vector<double>> weights;
};

// The taps of outputs [begin, begin + count) of a resize from in_size to out_size.
Taps bicubic_taps(int64_t in_size, int64_t out_size, int64_t begin, int64_t count) {
  const double scale = static_cast<double>(in_size) / static_cast<double>(out_size);
  const double filter_scale = std::max(scale, 1.0);
  const double support = 2.0 * filter_scale;
  Taps taps;
  for (int64_t o = begin; o < begin + count; ++o) {
    const double center = (static_cast<double>(o) + 0.5) * scale;
    const int64_t lo = std::max<int64_t>(static_cast<int64_t>(center - support + 0.5), 0);
    const int64_t hi = std::min<int64_t>(static_cast<int64_t>(center + support + 0.5), in_size);
    std::vector<double> w;
    double total = 0.0;
    for (int64_t i = lo; i < hi; ++i) {
      w.push_back(bicubic_kernel((static_cast<double>(i) - center + 0.5) / filter_scale));
      total += w.back();
    }
    if (total != 0.0) {
      for (double& v : w) v /= total;
    }
    taps.first.push_back(lo);
    taps.weights.push_back(std::move(w));
  }
  return taps;
}

// The window [x0, x0 + out_width) x [y0, y0 + out_height) of `image` resized to width x height: PIL's horizontal
// pass, then its vertical pass, each rounded and clamped to uint8 and skipped when its size does not change.
// Every output pixel depends only on its own taps, so only the window and the input rows it reads are computed:
// a crop of a huge resize (a very thin image) costs no more than the crop.
HwcImage resize_window(const HwcImage& image, int64_t width, int64_t height, int64_t x0, int64_t y0,
                       int64_t out_width, int64_t out_height) {
  const int64_t c = image.channels;
  const bool resize_rows = height != image.height;
  // The vertical taps first: they tell which input rows the window needs.
  Taps vertical;
  int64_t row_begin = y0, row_end = y0 + out_height;
  if (resize_rows) {
    vertical = bicubic_taps(image.height, height, y0, out_height);
    row_begin = image.height;
    row_end = 0;
    for (int64_t y = 0; y < out_height; ++y) {
      const auto taps = static_cast<int64_t>(vertical.weights[y].size());
      if (taps == 0) continue;
      row_begin = std::min(row_begin, vertical.first[y]);
      row_end = std::max(row_end, vertical.first[y] + taps);
    }
    row_end = std::max(row_end, row_begin);
  }
  // Horizontal pass over those rows.
  HwcImage rows{out_width, row_end - row_begin, c, std::vector<uint8_t>(out_width * (row_end - row_begin) * c)};
  if (width != image.width) {
    const Taps taps = bicubic_taps(image.width, width, x0, out_width);
    for (int64_t y = row_begin; y < row_end; ++y) {
      uint8_t* out = rows.data.data() + (y - row_begin) * out_width * c;
      for (int64_t x = 0; x < out_width; ++x) {
        const std::vector<double>& w = taps.weights[x];
        for (int64_t ch = 0; ch < c; ++ch) {
          double sum = 0.0;
          for (size_t k = 0; k < w.size(); ++k) {
            sum += w[k] * image.data[(y * image.width + taps.first[x] + static_cast<int64_t>(k)) * c + ch];
          }
          out[x * c + ch] = clamp_round(sum);
        }
      }
    }
  } else {
    for (int64_t y = row_begin; y < row_end; ++y) {
      const uint8_t* from = image.data.data() + (y * image.width + x0) * c;
      std::copy(from, from + out_width * c, rows.data.data() + (y - row_begin) * out_width * c);
    }
  }
  if (!resize_rows) return rows;
  // Vertical pass.
  HwcImage out{out_width, out_height, c, std::vector<uint8_t>(out_width * out_height * c)};
  const int64_t row = out_width * c;
  for (int64_t y = 0; y < out_height; ++y) {
    const std::vector<double>& w = vertical.weights[y];
    for (int64_t i = 0; i < row; ++i) {
      double sum = 0.0;
      for (size_t k = 0; k < w.size(); ++k) {
        sum += w[k] * rows.data[(vertical.first[y] + static_cast<int64_t>(k) - row_begin) * row + i];
      }
      out.data[y * row + i] = clamp_round(sum);
    }
  }
  return out;
}

}  // namespace

HwcImage box_downsample_2x(const HwcImage& image) {
  const int64_t w = image.width / 2, h = image.height / 2, c = image.channels;
  HwcImage out{w, h, c, std::vector<uint8_t>(w * h * c)};
  const auto at = [&](int64_t y, int64_t x, int64_t ch) { return int{image.data[(y * image.width + x) * c + ch]}; };
  for (int64_t y = 0; y < h; ++y) {
    for (int64_t x = 0; x < w; ++x) {
      for (int64_t ch = 0; ch < c; ++ch) {
        const int sum = at(2 * y, 2 * x, ch) + at(2 * y, 2 * x + 1, ch) + at(2 * y + 1, 2 * x, ch) +
                        at(2 * y + 1, 2 * x + 1, ch);
        out.data[(y * w + x) * c + ch] = static_cast<uint8_t>((sum + 2) / 4);
      }
    }
  }
  return out;
}

HwcImage resize_bicubic(const HwcImage& image, int64_t width, int64_t height) {
  // PIL skips a pass whose size does not change; so do we, which also keeps exact sizes lossless.
  return resize_window(image, width, height, 0, 0, width, height);
}

HwcImage center_crop(const HwcImage& image, int64_t size) {
  if (image.width < size || image.height < size) {
    throw std::invalid_argument("center_crop: image smaller than the crop");
  }
  const int64_t x0 = (image.width - size) / 2, y0 = (image.height - size) / 2, c = image.channels;
  HwcImage out{size, size, c, std::vector<uint8_t>(size * size * c)};
  for (int64_t y = 0; y < size; ++y) {
    const uint8_t* from = image.data.data() + ((y0 + y) * image.width + x0) * c;
    std::copy(from, from + size * c, out.data.data() + y * size * c);
  }
  return out;
}

HwcImage resize_center_crop(HwcImage image, int64_t size) {
  while (std::min(image.width, image.height) >= 2 * size) {
    image = box_downsample_2x(image);
  }
  const double scale = static_cast<double>(size) / static_cast<double>(std::min(image.width, image.height));
  // std::nearbyint rounds half to even under the default rounding mode, like Python's round().
  const auto width = static_cast<int64_t>(std::nearbyint(static_cast<double>(image.width) * scale));
  const auto height = static_cast<int64_t>(std::nearbyint(static_cast<double>(image.height) * scale));
  // center_crop(resize_bicubic(image, W, H), size), computing only the crop.
  const int64_t resized_width = std::max(width, size), resized_height = std::max(height, size);
  return resize_window(image, resized_width, resized_height, (resized_width - size) / 2, (resized_height - size) / 2,
                       size, size);
}

HwcImage convert_channels(const HwcImage& image, int64_t channels) {
  const int64_t pixels = image.width * image.height, in = image.channels;
  HwcImage out{image.width, image.height, channels, std::vector<uint8_t>(pixels * channels)};
  const bool gray_in = in <= 2;
  for (int64_t p = 0; p < pixels; ++p) {
    const uint8_t* src = image.data.data() + p * in;
    uint8_t* dst = out.data.data() + p * channels;
    if (gray_in) {
      std::fill(dst, dst + channels, src[0]);
    } else if (channels == 3) {
      std::copy(src, src + 3, dst);
    } else {
      dst[0] = static_cast<uint8_t>((src[0] * 299 + src[1] * 587 + src[2] * 114 + 500) / 1000);
    }
  }
  return out;
}

}  // namespace ddpm
