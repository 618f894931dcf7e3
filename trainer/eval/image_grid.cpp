#include "trainer/eval/image_grid.h"

#include <unistd.h>

#include <png.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <memory>
#include <stdexcept>

namespace ddpm {

torch::Tensor make_grid(const torch::Tensor& images, int64_t padding) {
  TORCH_CHECK(images.dim() == 4 && images.scalar_type() == torch::kUInt8, "make_grid expects uint8 [N, C, H, W], got ",
              images.sizes(), " ", images.scalar_type());
  const int64_t n = images.size(0), c = images.size(1), h = images.size(2), w = images.size(3);
  const int64_t cols = static_cast<int64_t>(std::ceil(std::sqrt(static_cast<double>(n))));
  const int64_t rows = (n + cols - 1) / cols;
  torch::Tensor grid = torch::zeros({c, rows * (h + padding) + padding, cols * (w + padding) + padding}, torch::kUInt8);
  for (int64_t i = 0; i < n; ++i) {
    const int64_t y = padding + (i / cols) * (h + padding), x = padding + (i % cols) * (w + padding);
    grid.slice(1, y, y + h).slice(2, x, x + w).copy_(images[i]);
  }
  return grid;
}

namespace {

void write_png_file(const std::string& path, const torch::Tensor& image) {
  TORCH_CHECK(image.dim() == 3 && image.scalar_type() == torch::kUInt8 && (image.size(0) == 1 || image.size(0) == 3),
              "write_png expects uint8 [1 or 3, H, W], got ", image.sizes());
  const torch::Tensor hwc = image.permute({1, 2, 0}).contiguous().cpu();
  const int height = static_cast<int>(hwc.size(0)), width = static_cast<int>(hwc.size(1)), channels = static_cast<int>(hwc.size(2));
  const std::unique_ptr<FILE, int (*)(FILE*)> file(std::fopen(path.c_str(), "wb"), &std::fclose);
  if (!file) throw std::runtime_error("cannot write " + path + ": " + std::strerror(errno));
  png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, nullptr, nullptr, nullptr);
  png_infop info = png ? png_create_info_struct(png) : nullptr;
  if (!png || !info) {
    png_destroy_write_struct(&png, &info);
    throw std::runtime_error("libpng could not start writing " + path);
  }
  if (setjmp(png_jmpbuf(png))) {
    png_destroy_write_struct(&png, &info);
    throw std::runtime_error("libpng failed while writing " + path + " (disk full?)");
  }
  png_init_io(png, file.get());
  png_set_IHDR(png, info, width, height, 8, channels == 1 ? PNG_COLOR_TYPE_GRAY : PNG_COLOR_TYPE_RGB, PNG_INTERLACE_NONE,
               PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
  png_write_info(png, info);
  const uint8_t* data = hwc.data_ptr<uint8_t>();
  for (int y = 0; y < height; ++y) {
    png_write_row(png, const_cast<png_bytep>(data + static_cast<size_t>(y) * width * channels));
  }
  png_write_end(png, nullptr);
  png_destroy_write_struct(&png, &info);
  if (std::fflush(file.get()) != 0) throw std::runtime_error("cannot write " + path + ": " + std::strerror(errno));
}

}  // namespace

void write_png(const std::string& path, const torch::Tensor& image) {
  // Under a temporary name, renamed at the end: a reader (or a run cut short) never finds half an image.
  const std::string temporary = path + ".tmp-" + std::to_string(::getpid());
  try {
    write_png_file(temporary, image);
  } catch (...) {
    std::remove(temporary.c_str());
    throw;
  }
  if (std::rename(temporary.c_str(), path.c_str()) != 0) {
    const std::string why = std::strerror(errno);
    std::remove(temporary.c_str());
    throw std::runtime_error("cannot write " + path + ": " + why);
  }
}

}  // namespace ddpm
