// libFuzzer target: the checkpoint file's framing (parse_checkpoint_header, which read_checkpoint runs before
// it opens the tensor archive): magic, version, lengths, CRC, metadata.
// Input: the file. Each input is parsed twice: as it is, and with its last 4 bytes replaced by the CRC-32 of the
// rest, so that the fuzzer also gets past the checksum to the lengths and the metadata.
#include <cstddef>
#include <cstdint>
#include <string>

#include "tests/fuzz/fuzz_check.h"
#include "trainer/checkpoint/checkpoint_format.h"

namespace {

const std::string kName = "fuzz/ckpt-000000001.ddpm";

void parse(const std::string& bytes) {
  try {
    const ddpm::CheckpointHeader header = ddpm::parse_checkpoint_header(bytes, kName);
    // The archive that read_checkpoint hands to torch lies inside the file, before the CRC.
    FUZZ_CHECK(header.payload_offset >= 24 && header.payload_offset <= bytes.size() - 4 &&
                   header.payload_length == bytes.size() - 4 - header.payload_offset,
               "payload [%llu, +%llu) in a %zu-byte file", static_cast<unsigned long long>(header.payload_offset),
               static_cast<unsigned long long>(header.payload_length), bytes.size());
  } catch (const ddpm::CheckpointError& e) {
    ddpm_fuzz::expect_clear_message(e, kName);
  } catch (const std::exception& e) {
    ddpm_fuzz::unexpected_exception(e.what());
  } catch (...) {
    ddpm_fuzz::unexpected_exception("(not a std::exception)");
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string bytes(reinterpret_cast<const char*>(data), size);
  parse(bytes);
  if (bytes.size() >= 4) {
    const uint32_t crc = ddpm::checkpoint_format::crc32_of(bytes.data(), bytes.size() - 4);
    for (size_t i = 0; i < 4; ++i) bytes[bytes.size() - 4 + i] = static_cast<char>((crc >> (8 * i)) & 0xff);
    parse(bytes);
  }
  return 0;
}
