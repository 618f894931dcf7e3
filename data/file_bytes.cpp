#include "data/file_bytes.h"

#include <zlib.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>

#include "data/data_error.h"

namespace ddpm {

std::vector<uint8_t> read_file_bytes(const std::string& path) {
  // An ifstream opens a directory without complaint and then reports an absurd size: ask first.
  std::error_code error;
  if (std::filesystem::is_directory(path, error)) throw DataError("cannot read " + path + ": it is a directory");
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  if (!in) {
    throw DataError("cannot open " + path + ": " + std::strerror(errno));
  }
  const std::streamsize size = in.tellg();
  if (size < 0) {
    throw DataError("cannot read " + path + " (is it a directory?)");
  }
  std::vector<uint8_t> bytes(static_cast<size_t>(size));
  in.seekg(0);
  if (size > 0 && !in.read(reinterpret_cast<char*>(bytes.data()), size)) {
    throw DataError("cannot read " + path + ": read failed after " + std::to_string(in.gcount()) + " of " +
                    std::to_string(size) + " bytes");
  }
  return bytes;
}

bool is_gzip(const std::vector<uint8_t>& bytes) { return bytes.size() >= 2 && bytes[0] == 0x1f && bytes[1] == 0x8b; }

namespace {

struct InflateStream {
  z_stream z{};
  explicit InflateStream(const std::string& name) {
    if (inflateInit2(&z, 15 + 16) != Z_OK) {
      throw DataError("cannot inflate " + name + ": zlib init failed");
    }
  }
  ~InflateStream() { inflateEnd(&z); }
  InflateStream(const InflateStream&) = delete;
  InflateStream& operator=(const InflateStream&) = delete;
};

}  // namespace

std::vector<uint8_t> gunzip(const std::vector<uint8_t>& compressed, const std::string& name) {
  InflateStream stream(name);
  z_stream& z = stream.z;
  std::vector<uint8_t> out;
  // Data sets are compressed ~2-5x; start there and grow.
  out.resize(std::max<size_t>(compressed.size() * 4, 1 << 16));
  z.next_in = const_cast<Bytef*>(compressed.data());
  z.avail_in = static_cast<uInt>(compressed.size());
  size_t produced = 0;
  while (true) {
    if (produced == out.size()) {
      out.resize(out.size() * 2);
    }
    z.next_out = out.data() + produced;
    z.avail_out = static_cast<uInt>(std::min<size_t>(out.size() - produced, 1u << 30));
    const uInt before = z.avail_out;
    const int rc = inflate(&z, Z_NO_FLUSH);
    produced += before - z.avail_out;
    const size_t consumed = compressed.size() - z.avail_in;
    if (rc == Z_STREAM_END) {
      // gzip allows concatenated members; a trailing member is data, not garbage.
      if (z.avail_in == 0) break;
      if (inflateReset(&z) != Z_OK) {
        throw DataError("cannot inflate " + name + ": zlib reset failed at compressed offset " +
                        std::to_string(consumed));
      }
      continue;
    }
    if (rc == Z_OK) continue;
    if (rc == Z_BUF_ERROR && z.avail_in == 0) {
      throw DataError(name + ": truncated gzip stream: input ended at compressed byte " + std::to_string(consumed) +
                      " of " + std::to_string(compressed.size()) + " after " + std::to_string(produced) +
                      " decompressed bytes");
    }
    if (rc == Z_BUF_ERROR) continue;
    throw DataError(name + ": corrupt gzip stream at compressed offset " + std::to_string(consumed) + ": " +
                    (z.msg ? z.msg : "zlib error " + std::to_string(rc)));
  }
  out.resize(produced);
  return out;
}

std::vector<uint8_t> read_maybe_gzipped(const std::string& path) {
  std::vector<uint8_t> bytes = read_file_bytes(path);
  return is_gzip(bytes) ? gunzip(bytes, path) : bytes;
}

}  // namespace ddpm
