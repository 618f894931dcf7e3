#include "data/idx.h"

#include <cstdio>
#include <filesystem>

#include "data/data_error.h"
#include "data/file_bytes.h"

namespace ddpm {
namespace {

constexpr uint32_t kImagesMagic = 0x00000803;  // uint8 data, 3 dimensions
constexpr uint32_t kLabelsMagic = 0x00000801;  // uint8 data, 1 dimension

uint32_t read_be32(const std::vector<uint8_t>& bytes, size_t offset) {
  return (uint32_t{bytes[offset]} << 24) | (uint32_t{bytes[offset + 1]} << 16) | (uint32_t{bytes[offset + 2]} << 8) |
         uint32_t{bytes[offset + 3]};
}

std::string hex32(uint32_t value) {
  char buffer[16];
  std::snprintf(buffer, sizeof buffer, "0x%08x", value);
  return buffer;
}

// Checks the magic and returns the dimensions of an IDX file with `dims` dimensions.
std::vector<int64_t> read_header(const std::vector<uint8_t>& bytes, const std::string& name, uint32_t magic,
                                 size_t dims) {
  const size_t header = 4 + 4 * dims;
  if (bytes.size() < 4) {
    throw DataError(name + ": truncated IDX file: expected at least " + std::to_string(header) +
                    " header bytes, got " + std::to_string(bytes.size()));
  }
  const uint32_t found = read_be32(bytes, 0);
  if (found != magic) {
    throw DataError(name + ": wrong magic number " + hex32(found) + " at offset 0 (expected " + hex32(magic) + ")");
  }
  if (bytes.size() < header) {
    throw DataError(name + ": truncated IDX file: expected at least " + std::to_string(header) +
                    " header bytes, got " + std::to_string(bytes.size()));
  }
  std::vector<int64_t> shape;
  for (size_t d = 0; d < dims; ++d) shape.push_back(read_be32(bytes, 4 + 4 * d));
  // Three 32-bit dimensions can multiply past 64 bits (a corrupt header): no file is that large.
  uint64_t payload = 1;
  bool overflow = false;
  for (const int64_t dim : shape) {
    if (dim == 0) {
      payload = 0;
      overflow = false;
      break;
    }
    if (payload > (uint64_t{1} << 62) / static_cast<uint64_t>(dim)) overflow = true;
    if (!overflow) payload *= static_cast<uint64_t>(dim);
  }
  if (overflow) {
    std::string product;
    for (const int64_t dim : shape) product += (product.empty() ? "" : " x ") + std::to_string(dim);
    throw DataError(name + ": truncated IDX file: expected " + std::to_string(header) + " + " + product +
                    " bytes (the dimensions at offset 4), got " + std::to_string(bytes.size()));
  }
  const int64_t expected = static_cast<int64_t>(header) + static_cast<int64_t>(payload);
  const auto actual = static_cast<int64_t>(bytes.size());
  if (actual < expected) {
    throw DataError(name + ": truncated IDX file: expected " + std::to_string(expected) + " bytes, got " +
                    std::to_string(actual));
  }
  if (actual > expected) {
    throw DataError(name + ": " + std::to_string(actual - expected) + " unexpected trailing bytes after offset " +
                    std::to_string(expected) + " (expected " + std::to_string(expected) + " bytes, got " +
                    std::to_string(actual) + ")");
  }
  return shape;
}

// The existing file among <folder>/<stem>.gz and <folder>/<stem>.
std::string find_idx_file(const std::string& folder, const std::string& stem) {
  namespace fs = std::filesystem;
  for (const std::string& candidate : {stem + ".gz", stem}) {
    const fs::path path = fs::path(folder) / candidate;
    if (fs::exists(path)) return path.string();
  }
  throw DataError("missing file: " + (fs::path(folder) / stem).string() + "[.gz] (IDX data set in " + folder + ")");
}

}  // namespace

RawImages parse_idx(const std::vector<uint8_t>& images, const std::string& images_name,
                    const std::vector<uint8_t>& labels, const std::string& labels_name) {
  const std::vector<int64_t> image_shape = read_header(images, images_name, kImagesMagic, 3);
  const std::vector<int64_t> label_shape = read_header(labels, labels_name, kLabelsMagic, 1);
  if (image_shape[0] != label_shape[0]) {
    throw DataError(images_name + " holds " + std::to_string(image_shape[0]) + " images but " + labels_name +
                    " holds " + std::to_string(label_shape[0]) + " labels");
  }
  if (image_shape[0] == 0) {
    throw DataError(images_name + " holds no images");
  }
  RawImages dataset;
  dataset.source = images_name;
  dataset.count = image_shape[0];
  dataset.channels = 1;
  dataset.height = image_shape[1];
  dataset.width = image_shape[2];
  // read_header checked both sizes exactly: the rest of each file is the pixels, resp. the labels.
  dataset.pixels.assign(images.begin() + 16, images.end());
  dataset.labels.assign(labels.begin() + 8, labels.end());
  return dataset;
}

RawImages load_idx(const std::string& folder, const std::string& split) {
  std::string prefix;
  if (split == "train") {
    prefix = "train";
  } else if (split == "test") {
    prefix = "t10k";
  } else {
    throw DataError("IDX data set " + folder + ": unknown split '" + split + "' (expected train or test)");
  }
  const std::string images_path = find_idx_file(folder, prefix + "-images-idx3-ubyte");
  const std::string labels_path = find_idx_file(folder, prefix + "-labels-idx1-ubyte");
  return parse_idx(read_maybe_gzipped(images_path), images_path, read_maybe_gzipped(labels_path), labels_path);
}

}  // namespace ddpm
