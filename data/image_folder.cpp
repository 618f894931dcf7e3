#include "data/image_folder.h"

#include <stb/stb_image.h>

#include <algorithm>
#include <cctype>
#include <cstring>
#include <filesystem>
#include <memory>

#include "data/data_error.h"
#include "data/file_bytes.h"

namespace ddpm {
namespace {

bool has_image_extension(const std::filesystem::path& path) {
  std::string ext = path.extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return std::tolower(c); });
  return ext == ".png" || ext == ".jpg" || ext == ".jpeg";
}

struct StbiFree {
  void operator()(unsigned char* pixels) const { stbi_image_free(pixels); }
};

}  // namespace

std::vector<std::string> list_image_files(const std::string& folder) {
  namespace fs = std::filesystem;
  std::error_code error;
  if (!fs::is_directory(folder, error)) {
    throw DataError("missing image folder: " + folder +
                    (fs::exists(folder) ? " is not a directory" : " does not exist"));
  }
  std::vector<std::string> files;
  for (auto it = fs::recursive_directory_iterator(folder, fs::directory_options::follow_directory_symlink, error);
       !error && it != fs::recursive_directory_iterator(); it.increment(error)) {
    if (it->is_regular_file() && has_image_extension(it->path())) files.push_back(it->path().string());
  }
  if (error) {
    throw DataError("cannot list image folder " + folder + ": " + error.message());
  }
  std::sort(files.begin(), files.end());
  if (files.empty()) {
    throw DataError("image folder " + folder + " holds no .png/.jpg/.jpeg files");
  }
  return files;
}

HwcImage decode_image_file(const std::string& path) {
  const std::vector<uint8_t> bytes = read_file_bytes(path);
  if (bytes.empty()) {
    throw DataError("cannot decode image " + path + ": the file is empty (0 bytes)");
  }
  int width = 0, height = 0, channels = 0;
  std::unique_ptr<unsigned char, StbiFree> pixels(
      stbi_load_from_memory(bytes.data(), static_cast<int>(bytes.size()), &width, &height, &channels, 0));
  if (!pixels) {
    throw DataError("cannot decode image " + path + " (" + std::to_string(bytes.size()) +
                    " bytes): " + stbi_failure_reason());
  }
  HwcImage image{width, height, channels,
                 std::vector<uint8_t>(pixels.get(), pixels.get() + int64_t{width} * height * channels)};
  // Resize in the image's own color space (as improved-diffusion does before convert("RGB")), minus alpha.
  return convert_channels(image, channels <= 2 ? 1 : 3);
}

ImageDataset load_image_folder(const std::string& folder, int64_t image_size, int64_t channels) {
  const std::vector<std::string> files = list_image_files(folder);
  const auto count = static_cast<int64_t>(files.size());
  ImageDataset dataset;
  dataset.source = folder;
  dataset.images = torch::empty({count, channels, image_size, image_size}, torch::kUInt8);
  dataset.labels = torch::full({count}, -1, torch::kInt64);
  const int64_t plane = image_size * image_size;
  for (int64_t i = 0; i < count; ++i) {
    const HwcImage image = convert_channels(resize_center_crop(decode_image_file(files[i]), image_size), channels);
    uint8_t* out = dataset.images.data_ptr<uint8_t>() + i * channels * plane;
    for (int64_t p = 0; p < plane; ++p) {
      for (int64_t c = 0; c < channels; ++c) out[c * plane + p] = image.data[p * channels + c];
    }
  }
  return dataset;
}

}  // namespace ddpm
