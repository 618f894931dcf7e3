#include "trainer/checkpoint.h"

#include <fcntl.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <iterator>
#include <sstream>

namespace ddpm {
namespace fs = std::filesystem;
namespace {

constexpr char kMagic[8] = {'D', 'D', 'P', 'M', 'C', 'K', 'P', 'T'};
constexpr const char* kPrefix = "ckpt-";
constexpr const char* kSuffix = ".ddpm";
constexpr const char* kTempSuffix = ".tmp";
// metadata length field + payload length field + CRC: the smallest possible file beyond magic and version.
constexpr size_t kFixedBytes = sizeof(kMagic) + 4 + 4 + 8 + 4;

template <class T>
void append_le(std::string& out, T value) {
  for (size_t i = 0; i < sizeof(T); ++i) out.push_back(static_cast<char>((static_cast<uint64_t>(value) >> (8 * i)) & 0xff));
}

template <class T>
T read_le(const std::string& bytes, size_t offset) {
  uint64_t value = 0;
  for (size_t i = 0; i < sizeof(T); ++i) value |= static_cast<uint64_t>(static_cast<uint8_t>(bytes[offset + i])) << (8 * i);
  return static_cast<T>(value);
}

uint32_t crc32_of(const char* data, size_t size) {
  uLong crc = crc32(0L, Z_NULL, 0);
  // zlib takes uInt lengths: feed large buffers in pieces.
  constexpr size_t kChunk = size_t{1} << 30;
  for (size_t offset = 0; offset < size; offset += kChunk) {
    crc = crc32(crc, reinterpret_cast<const Bytef*>(data + offset), static_cast<uInt>(std::min(kChunk, size - offset)));
  }
  return static_cast<uint32_t>(crc);
}

std::string serialize_tensors(const std::map<std::string, torch::Tensor>& tensors) {
  torch::serialize::OutputArchive archive;
  for (const auto& [name, tensor] : tensors) archive.write(name, tensor.detach().cpu().contiguous());
  std::ostringstream stream;
  archive.save_to(stream);
  return stream.str();
}

std::string encode(const Checkpoint& checkpoint) {
  const std::string payload = serialize_tensors(checkpoint.tensors);
  std::string metadata = "{\"step\":" + std::to_string(checkpoint.step) + ",\"user\":" +
                         (checkpoint.metadata.empty() ? std::string("null") : checkpoint.metadata) + "}";
  std::string bytes(kMagic, sizeof(kMagic));
  append_le<uint32_t>(bytes, kCheckpointFormatVersion);
  append_le<uint32_t>(bytes, static_cast<uint32_t>(metadata.size()));
  bytes += metadata;
  append_le<uint64_t>(bytes, payload.size());
  bytes += payload;
  append_le<uint32_t>(bytes, crc32_of(bytes.data(), bytes.size()));
  return bytes;
}

[[noreturn]] void fail(const fs::path& path, const std::string& what) {
  throw CheckpointError("checkpoint " + path.string() + ": " + what);
}

void write_all(int fd, const std::string& bytes, const fs::path& path) {
  size_t written = 0;
  while (written < bytes.size()) {
    const ssize_t n = ::write(fd, bytes.data() + written, bytes.size() - written);
    if (n < 0) {
      if (errno == EINTR) continue;
      fail(path, std::string("write failed after ") + std::to_string(written) + " bytes: " + std::strerror(errno));
    }
    written += static_cast<size_t>(n);
  }
}

void fsync_directory(const fs::path& dir) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY);
  if (fd < 0) fail(dir, std::string("cannot open the directory to sync it: ") + std::strerror(errno));
  const int rc = ::fsync(fd);
  ::close(fd);
  if (rc != 0) fail(dir, std::string("fsync of the directory failed: ") + std::strerror(errno));
}

std::optional<int64_t> step_of(const fs::path& path) {
  const std::string name = path.filename().string();
  const size_t prefix = std::strlen(kPrefix), suffix = std::strlen(kSuffix);
  if (name.size() <= prefix + suffix || name.rfind(kPrefix, 0) != 0 ||
      name.compare(name.size() - suffix, suffix, kSuffix) != 0) {
    return std::nullopt;
  }
  const std::string digits = name.substr(prefix, name.size() - prefix - suffix);
  // At most 18 digits: always fits in int64.
  if (digits.empty() || digits.size() > 18 ||
      !std::all_of(digits.begin(), digits.end(), [](char ch) { return std::isdigit(static_cast<unsigned char>(ch)); })) {
    return std::nullopt;
  }
  return std::stoll(digits);
}

std::string extract_user_metadata(const std::string& metadata, const fs::path& path) {
  const std::string key = ",\"user\":";
  const size_t at = metadata.find(key);
  if (metadata.rfind("{\"step\":", 0) != 0 || at == std::string::npos || metadata.back() != '}') {
    fail(path, "malformed metadata");
  }
  std::string user = metadata.substr(at + key.size(), metadata.size() - at - key.size() - 1);
  return user == "null" ? "" : user;
}

}  // namespace

std::string checkpoint_file_name(int64_t step) {
  char name[64];
  std::snprintf(name, sizeof(name), "%s%09lld%s", kPrefix, static_cast<long long>(step), kSuffix);
  return name;
}

fs::path write_checkpoint(const fs::path& dir, const Checkpoint& checkpoint) {
  const std::string bytes = encode(checkpoint);
  const fs::path final_path = dir / checkpoint_file_name(checkpoint.step);
  const fs::path temp_path = dir / ("." + checkpoint_file_name(checkpoint.step) + "." + std::to_string(::getpid()) + kTempSuffix);
  int fd = ::open(temp_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) fail(temp_path, std::string("cannot create: ") + std::strerror(errno));
  try {
    write_all(fd, bytes, temp_path);
    if (::fsync(fd) != 0) fail(temp_path, std::string("fsync failed: ") + std::strerror(errno));
    const int closed = ::close(fd);
    fd = -1;  // released even when close reports an error: never close the number twice
    if (closed != 0) fail(temp_path, std::string("close failed: ") + std::strerror(errno));
  } catch (...) {
    if (fd >= 0) ::close(fd);
    std::error_code ignored;
    fs::remove(temp_path, ignored);
    throw;
  }
  if (::rename(temp_path.c_str(), final_path.c_str()) != 0) {
    const std::string reason = std::strerror(errno);
    std::error_code ignored;
    fs::remove(temp_path, ignored);
    fail(final_path, "rename from the temp file failed: " + reason);
  }
  fsync_directory(dir);
  return final_path;
}

Checkpoint read_checkpoint(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail(path, "cannot open");
  const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
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
  const uint64_t expected_size = payload_offset_field + 8 + payload_length + 4;
  if (expected_size != bytes.size()) {
    fail(path, (expected_size > bytes.size() ? "truncated: " : "trailing bytes: ") + std::string("expected ") +
                   std::to_string(expected_size) + " bytes from the lengths at offsets 12 and " +
                   std::to_string(payload_offset_field) + ", found " + std::to_string(bytes.size()));
  }
  const uint32_t stored_crc = read_le<uint32_t>(bytes, bytes.size() - 4);
  const uint32_t actual_crc = crc32_of(bytes.data(), bytes.size() - 4);
  if (stored_crc != actual_crc) fail(path, "checksum mismatch (the file is corrupt)");

  Checkpoint checkpoint;
  const std::string metadata = bytes.substr(16, metadata_length);
  checkpoint.metadata = extract_user_metadata(metadata, path);
  try {
    checkpoint.step = std::stoll(metadata.substr(std::strlen("{\"step\":")));
  } catch (const std::exception&) {
    fail(path, "malformed step in the metadata");
  }
  const std::optional<int64_t> named_step = step_of(path);
  if (named_step && *named_step != checkpoint.step) {
    fail(path, "holds step " + std::to_string(checkpoint.step) + " but is named for step " + std::to_string(*named_step));
  }
  try {
    torch::serialize::InputArchive archive;
    archive.load_from(bytes.data() + payload_offset_field + 8, payload_length);
    for (const std::string& key : archive.keys()) {
      torch::Tensor tensor;
      archive.read(key, tensor);
      checkpoint.tensors.emplace(key, tensor);
    }
  } catch (const c10::Error& e) {
    fail(path, std::string("tensor archive unreadable: ") + e.what_without_backtrace());
  }
  return checkpoint;
}

std::vector<fs::path> list_checkpoints(const fs::path& dir) {
  std::vector<std::pair<int64_t, fs::path>> found;
  std::error_code error;
  for (const fs::directory_entry& entry : fs::directory_iterator(dir, error)) {
    if (!entry.is_regular_file()) continue;
    if (const std::optional<int64_t> step = step_of(entry.path())) found.emplace_back(*step, entry.path());
  }
  std::sort(found.begin(), found.end(), [](const auto& a, const auto& b) { return a.first > b.first; });
  std::vector<fs::path> paths;
  for (auto& [step, path] : found) paths.push_back(std::move(path));
  return paths;
}

void remove_interrupted_writes(const fs::path& dir) {
  std::error_code error;
  for (const fs::directory_entry& entry : fs::directory_iterator(dir, error)) {
    const std::string name = entry.path().filename().string();
    if (name.rfind(std::string(".") + kPrefix, 0) == 0 && entry.path().extension() == kTempSuffix) {
      fs::remove(entry.path(), error);  // never committed, so never valid
    }
  }
}

std::optional<Checkpoint> load_newest_valid_checkpoint(const fs::path& dir, std::vector<std::string>* warnings,
                                                       fs::path* loaded_path) {
  for (const fs::path& path : list_checkpoints(dir)) {
    try {
      Checkpoint checkpoint = read_checkpoint(path);
      if (loaded_path != nullptr) *loaded_path = path;
      return checkpoint;
    } catch (const CheckpointError& e) {
      if (warnings != nullptr) warnings->push_back(std::string(e.what()) + "; falling back to an older checkpoint");
    }
  }
  return std::nullopt;
}

void prune_checkpoints(const fs::path& dir, int64_t keep, int64_t current_step) {
  std::vector<fs::path> candidates;
  for (const fs::path& path : list_checkpoints(dir)) {
    if (step_of(path).value_or(0) <= current_step) candidates.push_back(path);
  }
  for (size_t i = static_cast<size_t>(std::max<int64_t>(keep, 1)); i < candidates.size(); ++i) {
    std::error_code ignored;
    fs::remove(candidates[i], ignored);
  }
}

}  // namespace ddpm
