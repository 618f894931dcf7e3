// The framing of a checkpoint file (layout in checkpoint.h): magic, version, lengths, CRC and the metadata
// around the tensor archive. Torch-free and header-only, so that tests/fuzz/fuzz_checkpoint_header.cpp
// compiles it without LibTorch; read_checkpoint (checkpoint.cpp) calls parse_checkpoint_header.
#pragma once
#include <zlib.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <stdexcept>
#include <string>

namespace ddpm {

class CheckpointError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

inline constexpr uint32_t kCheckpointFormatVersion = 1;

// What the framing says once magic, version, lengths, CRC and metadata have been verified.
struct CheckpointHeader {
  int64_t step = 0;
  std::string metadata;         // the writer's JSON ("" when it wrote none)
  uint64_t payload_offset = 0;  // the tensor archive is bytes [payload_offset, payload_offset + payload_length),
  uint64_t payload_length = 0;  // always inside the file, before the CRC
};

namespace checkpoint_format {

inline constexpr char kMagic[8] = {'D', 'D', 'P', 'M', 'C', 'K', 'P', 'T'};
// metadata length field + payload length field + CRC: the smallest possible file beyond magic and version.
inline constexpr size_t kFixedBytes = sizeof(kMagic) + 4 + 4 + 8 + 4;

template <class T>
T read_le(const std::string& bytes, size_t offset) {
  uint64_t value = 0;
  for (size_t i = 0; i < sizeof(T); ++i) value |= static_cast<uint64_t>(static_cast<uint8_t>(bytes[offset + i])) << (8 * i);
  return static_cast<T>(value);
}

inline uint32_t crc32_of(const char* data, size_t size) {
  uLong crc = crc32(0L, Z_NULL, 0);
  // zlib takes uInt lengths: feed large buffers in pieces.
  constexpr size_t kChunk = size_t{1} << 30;
  for (size_t offset = 0; offset < size; offset += kChunk) {
    crc = crc32(crc, reinterpret_cast<const Bytef*>(data + offset), static_cast<uInt>(std::min(kChunk, size - offset)));
  }
  return static_cast<uint32_t>(crc);
}

[[noreturn]] inline void fail(const std::filesystem::path& path, const std::string& what) {
  throw CheckpointError("checkpoint " + path.string() + ": " + what);
}

// The writer's JSON out of {"step":N,"user":<json>}.
inline std::string extract_user_metadata(const std::string& metadata, const std::filesystem::path& path) {
  const std::string key = ",\"user\":";
  const size_t at = metadata.find(key);
  if (metadata.rfind("{\"step\":", 0) != 0 || at == std::string::npos || metadata.back() != '}') {
    fail(path, "malformed metadata");
  }
  std::string user = metadata.substr(at + key.size(), metadata.size() - at - key.size() - 1);
  return user == "null" ? "" : user;
}

}  // namespace checkpoint_format

// Verifies the framing of a checkpoint file's bytes (magic, version, lengths against the size, CRC, metadata);
// `path` names it in messages. Throws CheckpointError naming the file and what is wrong (with the byte offset
// where it applies). The tensor archive itself is not looked at.
inline CheckpointHeader parse_checkpoint_header(const std::string& bytes, const std::filesystem::path& path) {
  using namespace checkpoint_format;
  if (bytes.size() < sizeof(kMagic) || std::memcmp(bytes.data(), kMagic, sizeof(kMagic)) != 0) {
    fail(path, "not a ddpm checkpoint (bad magic at offset 0)");
  }
  if (bytes.size() < kFixedBytes) fail(path, "truncated: " + std::to_string(bytes.size()) + " bytes, header incomplete");
  const uint32_t version = read_le<uint32_t>(bytes, 8);
  if (version != kCheckpointFormatVersion) {
    fail(path, "format version " + std::to_string(version) + " at offset 8, this build reads version " +
                   std::to_string(kCheckpointFormatVersion));
  }
  const uint64_t metadata_length = read_le<uint32_t>(bytes, 12);
  const uint64_t payload_offset_field = 16 + metadata_length;
  if (payload_offset_field + 8 + 4 > bytes.size()) {
    fail(path, "truncated: metadata of " + std::to_string(metadata_length) + " bytes (length at offset 12) runs past the end of the " +
                   std::to_string(bytes.size()) + "-byte file");
  }
  const uint64_t payload_length = read_le<uint64_t>(bytes, payload_offset_field);
  const uint64_t room = bytes.size() - (payload_offset_field + 8 + 4);  // the payload bytes the file holds
  if (payload_length != room) {
    // A corrupt length near 2^64 would wrap the sum around: then the message shows the sum's terms.
    const uint64_t framing = payload_offset_field + 8 + 4;
    const std::string expected = payload_length <= UINT64_MAX - framing
                                     ? std::to_string(framing + payload_length)
                                     : std::to_string(framing) + " + " + std::to_string(payload_length);
    fail(path, (payload_length > room ? "truncated: " : "trailing bytes: ") + std::string("expected ") + expected +
                   " bytes from the lengths at offsets 12 and " + std::to_string(payload_offset_field) + ", found " +
                   std::to_string(bytes.size()));
  }
  const uint32_t stored_crc = read_le<uint32_t>(bytes, bytes.size() - 4);
  const uint32_t actual_crc = crc32_of(bytes.data(), bytes.size() - 4);
  if (stored_crc != actual_crc) fail(path, "checksum mismatch (the file is corrupt)");

  CheckpointHeader header;
  const std::string metadata = bytes.substr(16, metadata_length);
  header.metadata = extract_user_metadata(metadata, path);
  try {
    header.step = std::stoll(metadata.substr(std::strlen("{\"step\":")));
  } catch (const std::exception&) {
    fail(path, "malformed step in the metadata");
  }
  header.payload_offset = payload_offset_field + 8;
  header.payload_length = payload_length;
  return header;
}

}  // namespace ddpm
