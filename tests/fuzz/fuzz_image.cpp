// libFuzzer target: one image of an image folder as load_image_folder treats it: decode (stb_image), then
// resize_center_crop to the configured size and convert_channels to the configured channel count.
// Input: one parameter byte (bits 0-5: image_size - 1, so 1..64; bit 7: 3 channels, else 1), then the file.
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "data/data_error.h"
#include "data/image_folder.h"
#include "data/resize.h"
#include "tests/fuzz/fuzz_check.h"

namespace {
constexpr int64_t kFuzzMaxPixels = int64_t{1} << 16;  // 256 x 256, or 65536 x 1
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::string kName = "fuzz/image.png";
  if (size < 1) return 0;
  const int64_t image_size = 1 + (data[0] & 0x3f);
  const int64_t channels = (data[0] & 0x80) ? 3 : 1;
  const std::vector<uint8_t> bytes(data + 1, data + size);
  try {
    // A smaller pixel limit than the loader's kMaxImagePixels (2^28), the same check: a few-byte header may claim
    // up to the limit, and decoding costs time in proportion to the pixels (2^28 under ASan: seconds and gigabytes
    // per input; 2^20: 600 executions a second) while no decoder or resize path depends on the size beyond it.
    const ddpm::HwcImage decoded = ddpm::decode_image(bytes, kName, kFuzzMaxPixels);
    FUZZ_CHECK(decoded.width >= 1 && decoded.height >= 1 && (decoded.channels == 1 || decoded.channels == 3),
               "decoded %lld x %lld x %lld", static_cast<long long>(decoded.width),
               static_cast<long long>(decoded.height), static_cast<long long>(decoded.channels));
    FUZZ_CHECK(decoded.data.size() == static_cast<size_t>(decoded.width * decoded.height * decoded.channels),
               "decoded data size");
    const ddpm::HwcImage out = ddpm::convert_channels(ddpm::resize_center_crop(decoded, image_size), channels);
    FUZZ_CHECK(out.width == image_size && out.height == image_size && out.channels == channels,
               "resized to %lld x %lld x %lld", static_cast<long long>(out.width), static_cast<long long>(out.height),
               static_cast<long long>(out.channels));
    FUZZ_CHECK(out.data.size() == static_cast<size_t>(image_size * image_size * channels), "resized data size");
  } catch (const ddpm::DataError& e) {
    ddpm_fuzz::expect_clear_message(e, kName);
  } catch (const std::exception& e) {
    ddpm_fuzz::unexpected_exception(e.what());
  } catch (...) {
    ddpm_fuzz::unexpected_exception("(not a std::exception)");
  }
  return 0;
}
