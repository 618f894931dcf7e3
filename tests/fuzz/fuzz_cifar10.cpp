// libFuzzer target: the CIFAR-10 binary batch reader (parse_cifar10, which load_cifar10 runs on the files).
// Input: one flag byte; bit 7 clear: the rest is one batch file; set: u16 little-endian length n, n bytes of the
// first file, the rest the second.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "data/cifar10.h"
#include "data/data_error.h"
#include "tests/fuzz/fuzz_check.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::vector<std::string> kNames = {"fuzz/data_batch_1.bin", "fuzz/data_batch_2.bin"};
  static const std::string kSource = "fuzz (CIFAR-10 train batches)";
  if (size < 1) return 0;
  std::vector<std::vector<uint8_t>> files;
  if ((data[0] & 0x80) == 0 || size < 3) {
    files.emplace_back(data + 1, data + size);
  } else {
    const size_t n = std::min<size_t>(data[1] | (size_t{data[2]} << 8), size - 3);
    files.emplace_back(data + 3, data + 3 + n);
    files.emplace_back(data + 3 + n, data + size);
  }
  const std::vector<std::string> names(kNames.begin(), kNames.begin() + static_cast<std::ptrdiff_t>(files.size()));
  try {
    const ddpm::RawImages raw = ddpm::parse_cifar10(files, names, kSource);
    size_t records = 0;
    for (const auto& file : files) records += file.size() / 3073;
    FUZZ_CHECK(raw.count == static_cast<int64_t>(records) && raw.channels == 3 && raw.height == 32 && raw.width == 32,
               "bad shape");
    FUZZ_CHECK(raw.pixels.size() == records * 3072 && raw.labels.size() == records, "bad array sizes");
    for (int64_t label : raw.labels) FUZZ_CHECK(label >= 0 && label <= 9, "label %lld", static_cast<long long>(label));
    // The last record's last pixel is the file's last byte.
    FUZZ_CHECK(raw.pixels.back() == files.back().back(), "pixels do not match the records");
  } catch (const ddpm::DataError& e) {
    const std::string message = e.what();
    ddpm_fuzz::print_rejection(message);
    FUZZ_CHECK(!message.empty(), "empty error message");
    bool named = false;
    for (const std::string& name : names) named |= message.find(name) != std::string::npos;
    FUZZ_CHECK(named, "the message names no file: %s", message.c_str());
  } catch (const std::exception& e) {
    ddpm_fuzz::unexpected_exception(e.what());
  } catch (...) {
    ddpm_fuzz::unexpected_exception("(not a std::exception)");
  }
  return 0;
}
