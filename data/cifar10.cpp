#include "data/cifar10.h"

#include <cstring>
#include <filesystem>

#include "data/data_error.h"
#include "data/file_bytes.h"

namespace ddpm {
namespace {

constexpr int64_t kSide = 32;
constexpr int64_t kPixelBytes = 3 * kSide * kSide;
constexpr int64_t kRecordBytes = 1 + kPixelBytes;
constexpr int64_t kClasses = 10;

}  // namespace

std::vector<std::string> cifar10_files(const std::string& folder, const std::string& split) {
  namespace fs = std::filesystem;
  std::vector<std::string> names;
  if (split == "train") {
    for (int i = 1; i <= 5; ++i) names.push_back("data_batch_" + std::to_string(i) + ".bin");
  } else if (split == "test") {
    names.push_back("test_batch.bin");
  } else {
    throw DataError("CIFAR-10 data set " + folder + ": unknown split '" + split + "' (expected train or test)");
  }
  std::vector<std::string> paths;
  for (const std::string& name : names) paths.push_back((fs::path(folder) / name).string());
  return paths;
}

ImageDataset load_cifar10(const std::string& folder, const std::string& split) {
  const std::vector<std::string> paths = cifar10_files(folder, split);
  // Read and check every file before allocating, so that a bad last file fails as fast as a bad first one.
  std::vector<std::vector<uint8_t>> files;
  int64_t records = 0;
  for (const std::string& path : paths) {
    if (!std::filesystem::exists(path)) {
      throw DataError("missing file: " + path + " (CIFAR-10 " + split + " split)");
    }
    files.push_back(read_file_bytes(path));
    const auto size = static_cast<int64_t>(files.back().size());
    if (size == 0) {
      throw DataError(path + ": empty CIFAR-10 batch file (0 bytes)");
    }
    if (size % kRecordBytes != 0) {
      throw DataError(path + ": size " + std::to_string(size) + " bytes is not a multiple of the " +
                      std::to_string(kRecordBytes) + "-byte CIFAR-10 record (" + std::to_string(size / kRecordBytes) +
                      " whole records, then " + std::to_string(size % kRecordBytes) + " bytes from offset " +
                      std::to_string(size - size % kRecordBytes) + ")");
    }
    records += size / kRecordBytes;
  }
  ImageDataset dataset;
  dataset.source = paths.size() == 1 ? paths[0] : folder + " (CIFAR-10 " + split + " batches)";
  dataset.images = torch::empty({records, 3, kSide, kSide}, torch::kUInt8);
  dataset.labels = torch::empty({records}, torch::kInt64);
  uint8_t* pixels = dataset.images.data_ptr<uint8_t>();
  int64_t* labels = dataset.labels.data_ptr<int64_t>();
  int64_t next = 0;
  for (size_t f = 0; f < files.size(); ++f) {
    const std::vector<uint8_t>& bytes = files[f];
    const int64_t count = static_cast<int64_t>(bytes.size()) / kRecordBytes;
    for (int64_t r = 0; r < count; ++r, ++next) {
      const uint8_t* record = bytes.data() + r * kRecordBytes;
      if (record[0] >= kClasses) {
        throw DataError(paths[f] + ": record " + std::to_string(r) + " (offset " + std::to_string(r * kRecordBytes) +
                        ") has label " + std::to_string(record[0]) + ", expected 0..9");
      }
      labels[next] = record[0];
      // The file's planes are already the NCHW layout: copy the record whole.
      std::memcpy(pixels + next * kPixelBytes, record + 1, kPixelBytes);
    }
  }
  return dataset;
}

}  // namespace ddpm
