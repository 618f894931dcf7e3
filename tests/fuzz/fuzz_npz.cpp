// libFuzzer target: the .npz reader (parse_npz, which read_npz runs on a file's bytes), and the writer on what it
// accepts. Input: one flag byte, then
//   bits 0-1 = 0 or 3: the .npz file as it is (the ZIP structure: end records, ZIP64, central directory, local
//                      headers, overlaps; a mutated entry mostly stops at its CRC);
//   bits 0-1 = 1:      one .npy entry, which the target stores as "arr_0.npy" in a valid archive with a correct CRC,
//   bits 0-1 = 2:      the same, deflated: so that the fuzzer gets past the checksum into the .npy header parser.
// An accepted archive must hold consistent arrays (the bytes the shape and dtype need), and write_npz must write
// them to a file that read_npz reads back identical. Inputs are at most -max_len (8 KiB), far from the writer's
// header limit (1 MiB), so everything the reader accepts the writer can write.
#include <unistd.h>
#include <zlib.h>

#include <cstddef>
#include <cstdint>
#include <exception>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "data/data_error.h"
#include "data/npz.h"
#include "tests/fuzz/fuzz_check.h"

namespace {

const std::string kName = "fuzz/input.npz";

void put16(std::vector<uint8_t>& out, uint32_t v) {
  out.push_back(static_cast<uint8_t>(v));
  out.push_back(static_cast<uint8_t>(v >> 8));
}
void put32(std::vector<uint8_t>& out, uint32_t v) {
  put16(out, v & 0xFFFF);
  put16(out, v >> 16);
}

std::vector<uint8_t> raw_deflate(const std::vector<uint8_t>& raw) {
  z_stream z{};
  if (deflateInit2(&z, 6, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY) != Z_OK) std::abort();
  std::vector<uint8_t> out(deflateBound(&z, raw.size()) + 16);
  z.next_in = const_cast<Bytef*>(raw.data());
  z.avail_in = static_cast<uInt>(raw.size());
  z.next_out = out.data();
  z.avail_out = static_cast<uInt>(out.size());
  FUZZ_CHECK(deflate(&z, Z_FINISH) == Z_STREAM_END, "deflate did not finish");
  out.resize(z.total_out);
  deflateEnd(&z);
  return out;
}

// A one-entry archive of `npy`, stored or deflated, with the right CRC and sizes.
std::vector<uint8_t> wrap(const std::vector<uint8_t>& npy, bool deflated) {
  const std::string name = "arr_0.npy";
  const std::vector<uint8_t> data = deflated ? raw_deflate(npy) : npy;
  const uint32_t crc = static_cast<uint32_t>(crc32(0, npy.data(), static_cast<uInt>(npy.size())));
  const uint16_t method = deflated ? 8 : 0;
  std::vector<uint8_t> zip;
  for (const bool central : {false, true}) {
    put32(zip, central ? 0x02014b50 : 0x04034b50);
    if (central) put16(zip, 20);
    for (const uint32_t v : {20u, 0u, uint32_t{method}, 0u, 0x21u}) put16(zip, v);
    put32(zip, crc);
    put32(zip, static_cast<uint32_t>(data.size()));
    put32(zip, static_cast<uint32_t>(npy.size()));
    put16(zip, static_cast<uint32_t>(name.size()));
    put16(zip, 0);
    if (central) {
      for (int i = 0; i < 3; ++i) put16(zip, 0);  // comment, disk, internal attributes
      put32(zip, 0);                             // external attributes
      put32(zip, 0);                             // the local header's offset
    }
    zip.insert(zip.end(), name.begin(), name.end());
    if (!central) zip.insert(zip.end(), data.begin(), data.end());
  }
  const uint32_t cd_offset = static_cast<uint32_t>(30 + name.size() + data.size());
  const uint32_t cd_size = static_cast<uint32_t>(zip.size() - cd_offset);
  put32(zip, 0x06054b50);
  for (const uint32_t v : {0u, 0u, 1u, 1u}) put16(zip, v);
  put32(zip, cd_size);
  put32(zip, cd_offset);
  put16(zip, 0);
  return zip;
}

// Where the round trip writes: memory when /dev/shm is there (the writer fsyncs).
std::string round_trip_path() {
  std::error_code error;
  const std::filesystem::path dir =
      std::filesystem::is_directory("/dev/shm", error) ? "/dev/shm" : std::filesystem::temp_directory_path();
  return (dir / ("ddpm_fuzz_npz_" + std::to_string(::getpid()) + ".npz")).string();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const int mode = data[0] & 3;
  const std::vector<uint8_t> rest(data + 1, data + size);
  const std::vector<uint8_t> input = mode == 1 || mode == 2 ? wrap(rest, mode == 2) : rest;
  std::map<std::string, ddpm::NpyArray> arrays;
  try {
    arrays = ddpm::parse_npz(input, kName);
  } catch (const ddpm::DataError& e) {
    ddpm_fuzz::expect_clear_message(e, kName);
    return 0;
  } catch (const std::exception& e) {
    ddpm_fuzz::unexpected_exception(e.what());
  } catch (...) {
    ddpm_fuzz::unexpected_exception("(not a std::exception)");
  }
  if (mode == 1 || mode == 2) FUZZ_CHECK(arrays.size() == 1 && arrays.count("arr_0") == 1, "not the one entry");
  for (const auto& [name, array] : arrays) {
    FUZZ_CHECK(!name.empty(), "an empty array name");
    for (const int64_t dim : array.shape) FUZZ_CHECK(dim >= 0, "a negative dimension in '%s'", name.c_str());
    const uint64_t expected = static_cast<uint64_t>(array.elements()) * ddpm::npy_item_size(array.dtype);
    FUZZ_CHECK(array.bytes.size() == expected, "'%s' holds %zu bytes, its shape needs %llu", name.c_str(),
               array.bytes.size(), static_cast<unsigned long long>(expected));
  }
  // What the reader accepts, the writer writes, and the reader reads back the same.
  static const std::string path = round_trip_path();
  try {
    ddpm::write_npz(path, arrays);
    const std::map<std::string, ddpm::NpyArray> again = ddpm::read_npz(path);
    std::filesystem::remove(path);
    FUZZ_CHECK(again.size() == arrays.size(), "%zu arrays written, %zu read back", arrays.size(), again.size());
    for (const auto& [name, array] : arrays) {
      const auto it = again.find(name);
      FUZZ_CHECK(it != again.end(), "'%s' was not read back", name.c_str());
      FUZZ_CHECK(it->second.dtype == array.dtype && it->second.shape == array.shape &&
                     it->second.bytes == array.bytes,
                 "'%s' reads back different", name.c_str());
    }
  } catch (const std::exception& e) {
    ddpm_fuzz::unexpected_exception((std::string("round trip: ") + e.what()).c_str());
  }
  return 0;
}
