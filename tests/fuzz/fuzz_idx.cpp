// libFuzzer target: the IDX reader (MNIST / Fashion-MNIST) as load_idx runs it on the two files' bytes:
// gunzip when the bytes start with the gzip magic, then parse_idx.
// Input: u16 little-endian length n, then n bytes of the images file, then the labels file.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "data/data_error.h"
#include "data/file_bytes.h"
#include "data/idx.h"
#include "tests/fuzz/fuzz_check.h"

namespace {
const std::string kImages = "fuzz/train-images-idx3-ubyte";
const std::string kLabels = "fuzz/train-labels-idx1-ubyte";

std::vector<uint8_t> maybe_gunzip(std::vector<uint8_t> bytes, const std::string& name) {
  return ddpm::is_gzip(bytes) ? ddpm::gunzip(bytes, name) : bytes;
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  const size_t n = std::min<size_t>(data[0] | (size_t{data[1]} << 8), size - 2);
  try {
    const std::vector<uint8_t> images = maybe_gunzip(std::vector<uint8_t>(data + 2, data + 2 + n), kImages);
    const std::vector<uint8_t> labels = maybe_gunzip(std::vector<uint8_t>(data + 2 + n, data + size), kLabels);
    const ddpm::RawImages raw = ddpm::parse_idx(images, kImages, labels, kLabels);
    FUZZ_CHECK(raw.count >= 1 && raw.channels == 1 && raw.height >= 0 && raw.width >= 0, "bad shape");
    FUZZ_CHECK(raw.pixels.size() == static_cast<size_t>(raw.count * raw.height * raw.width),
               "%zu pixels for %lld x %lld x %lld", raw.pixels.size(), static_cast<long long>(raw.count),
               static_cast<long long>(raw.height), static_cast<long long>(raw.width));
    FUZZ_CHECK(raw.labels.size() == static_cast<size_t>(raw.count), "%zu labels", raw.labels.size());
    FUZZ_CHECK(raw.source == kImages, "source %s", raw.source.c_str());
  } catch (const ddpm::DataError& e) {
    const std::string message = e.what();
    ddpm_fuzz::print_rejection(message);
    FUZZ_CHECK(!message.empty(), "empty error message");
    FUZZ_CHECK(message.find(kImages) != std::string::npos || message.find(kLabels) != std::string::npos,
               "the message names neither file: %s", message.c_str());
  } catch (const std::exception& e) {
    ddpm_fuzz::unexpected_exception(e.what());
  } catch (...) {
    ddpm_fuzz::unexpected_exception("(not a std::exception)");
  }
  return 0;
}
