#include "trainer/checkpoint/checkpoint.h"

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

template <class T>
void append_le(std::string& out, T value) {
  for (size_t i = 0; i < sizeof(T); ++i) out.push_back(static_cast<char>((static_cast<uint64_t>(value) >> (8 * i)) & 0xff));
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

// Writes `size` bytes that go at file offset `offset` (for the message).
void write_all(int fd, const char* data, size_t size, size_t offset, const fs::path& path) {
  size_t written = 0;
  while (written < size) {
    const ssize_t n = ::write(fd, data + written, size - written);
    if (n < 0) {
      if (errno == EINTR) continue;
      fail(path, std::string("write failed after ") + std::to_string(offset + written) + " bytes: " + std::strerror(errno));
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

}  // namespace

std::string checkpoint_file_name(int64_t step) {
  char name[64];
  std::snprintf(name, sizeof(name), "%s%09lld%s", kPrefix, static_cast<long long>(step), kSuffix);
  return name;
}

fs::path write_checkpoint(const fs::path& dir, const Checkpoint& checkpoint, const CheckpointWriteObserver& observer) {
  const auto reached = [&observer](CheckpointWritePhase phase) {
    if (observer) observer(phase);
  };
  const std::string bytes = encode(checkpoint);
  const fs::path final_path = dir / checkpoint_file_name(checkpoint.step);
  const fs::path temp_path = dir / ("." + checkpoint_file_name(checkpoint.step) + "." + std::to_string(::getpid()) + kTempSuffix);
  int fd = ::open(temp_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) fail(temp_path, std::string("cannot create: ") + std::strerror(errno));
  try {
    const size_t half = bytes.size() / 2;
    write_all(fd, bytes.data(), half, 0, temp_path);
    reached(CheckpointWritePhase::kPartlyWritten);
    write_all(fd, bytes.data() + half, bytes.size() - half, half, temp_path);
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
  reached(CheckpointWritePhase::kWrittenAndSynced);
  if (::rename(temp_path.c_str(), final_path.c_str()) != 0) {
    const std::string reason = std::strerror(errno);
    std::error_code ignored;
    fs::remove(temp_path, ignored);
    fail(final_path, "rename from the temp file failed: " + reason);
  }
  reached(CheckpointWritePhase::kRenamed);
  fsync_directory(dir);
  return final_path;
}

Checkpoint read_checkpoint(const fs::path& path) {
  std::error_code error;
  if (fs::is_directory(path, error)) fail(path, "is a directory, not a checkpoint file");
  std::ifstream in(path, std::ios::binary);
  if (!in) fail(path, std::string("cannot open: ") + std::strerror(errno));
  const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const CheckpointHeader header = parse_checkpoint_header(bytes, path);

  Checkpoint checkpoint;
  checkpoint.step = header.step;
  checkpoint.metadata = header.metadata;
  const std::optional<int64_t> named_step = step_of(path);
  if (named_step && *named_step != checkpoint.step) {
    fail(path, "holds step " + std::to_string(checkpoint.step) + " but is named for step " + std::to_string(*named_step));
  }
  try {
    torch::serialize::InputArchive archive;
    archive.load_from(bytes.data() + header.payload_offset, header.payload_length);
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
