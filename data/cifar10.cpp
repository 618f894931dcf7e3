#include "data/cifar10.h"

#include <cstring>
#include <filesystem>
#include <stdexcept>

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

RawImages load_cifar10(const std::string& folder, const std::string& split) {
  const std::vector<std::string> paths = cifar10_files(folder, split);
  std::vector<std::vector<uint8_t>> files;
  for (const std::string& path : paths) {
    if (!std::filesystem::exists(path)) {
      throw DataError("missing file: " + path + " (CIFAR-10 " + split + " split)");
    }
    files.push_back(read_file_bytes(path));
  }
  return parse_cifar10(files, paths, paths.size() == 1 ? paths[0] : folder + " (CIFAR-10 " + split + " batches)");
}

RawImages parse_cifar10(const std::vector<std::vector<uint8_t>>& files, const std::vector<std::string>& names,
                        const std::string& source) {
  if (files.size() != names.size()) {
    throw std::invalid_argument("parse_cifar10: " + std::to_string(files.size()) + " files but " +
                                std::to_string(names.size()) + " names");
  }
  // Check every file before allocating, so that a bad last file fails as fast as a bad first one.
  int64_t records = 0;
  for (size_t f = 0; f < files.size(); ++f) {
    const auto size = static_cast<int64_t>(files[f].size());
    if (size == 0) {
      throw DataError(names[f] + ": empty CIFAR-10 batch file (0 bytes)");
    }
    if (size % kRecordBytes != 0) {
      throw DataError(names[f] + ": size " + std::to_string(size) + " bytes is not a multiple of the " +
                      std::to_string(kRecordBytes) + "-byte CIFAR-10 record (" + std::to_string(size / kRecordBytes) +
                      " whole records, then " + std::to_string(size % kRecordBytes) + " bytes from offset " +
                      std::to_string(size - size % kRecordBytes) + ")");
    }
    records += size / kRecordBytes;
  }
  RawImages dataset;
  dataset.source = source;
  dataset.count = records;
  dataset.channels = 3;
  dataset.height = kSide;
  dataset.width = kSide;
  dataset.pixels.resize(static_cast<size_t>(records * kPixelBytes));
  dataset.labels.resize(static_cast<size_t>(records));
  uint8_t* pixels = dataset.pixels.data();
  int64_t* labels = dataset.labels.data();
  int64_t next = 0;
  for (size_t f = 0; f < files.size(); ++f) {
    const std::vector<uint8_t>& bytes = files[f];
    const int64_t count = static_cast<int64_t>(bytes.size()) / kRecordBytes;
    for (int64_t r = 0; r < count; ++r, ++next) {
      const uint8_t* record = bytes.data() + r * kRecordBytes;
      if (record[0] >= kClasses) {
        throw DataError(names[f] + ": record " + std::to_string(r) + " (offset " + std::to_string(r * kRecordBytes) +
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
