#include "data/npz.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <limits>
#include <optional>
#include <set>
#include <stdexcept>
#include <utility>

#include "data/data_error.h"
#include "data/printable.h"

namespace ddpm {

namespace {

// ---- ZIP layout (APPNOTE.TXT 6.3) ------------------------------------------------------------------------------

constexpr uint32_t kLocalHeaderSignature = 0x04034b50;
constexpr uint32_t kCentralHeaderSignature = 0x02014b50;
constexpr uint32_t kEndSignature = 0x06054b50;
constexpr uint32_t kZip64EndSignature = 0x06064b50;
constexpr uint32_t kZip64LocatorSignature = 0x07064b50;
constexpr uint32_t kDataDescriptorSignature = 0x08074b50;
constexpr uint64_t kLocalHeaderSize = 30;
constexpr uint64_t kCentralHeaderSize = 46;
constexpr uint64_t kEndSize = 22;
constexpr uint64_t kZip64EndSize = 56;
constexpr uint64_t kZip64LocatorSize = 20;
constexpr uint64_t kMaxCommentSize = 0xFFFF;
constexpr uint16_t kZip64ExtraId = 0x0001;
constexpr uint32_t kSentinel32 = 0xFFFFFFFFu;
constexpr uint16_t kSentinel16 = 0xFFFF;
constexpr uint16_t kMethodStored = 0;
constexpr uint16_t kMethodDeflated = 8;
constexpr uint16_t kFlagEncrypted = 0x0001;
constexpr uint16_t kFlagDataDescriptor = 0x0008;
constexpr uint16_t kFlagStrongEncryption = 0x0040;
constexpr uint16_t kFlagUtf8Name = 0x0800;
constexpr uint16_t kFlagMaskedHeaders = 0x2000;
// 1980-01-01 00:00:00 in DOS format, as numpy.savez writes it: the same arrays give the same bytes.
constexpr uint16_t kDosDate = (1 << 5) | 1;
constexpr uint16_t kDosTime = 0;

// Allocation guards of the reader. Deflate codes at most 258 bytes in 2 bits (a 1-bit length and a 1-bit distance
// code), so no stream inflates to more than 1032 times its size: a larger declared size is a lie, refused before
// anything is allocated. 64 GiB is far above any evaluation file (50,000 256x256 RGB images are 9.2 GiB).
constexpr uint64_t kMaxDeflateRatio = 1032;
constexpr uint64_t kMaxInflatedEntry = uint64_t{64} << 30;
// numpy refuses headers over 10,000 characters; a shape of 30,000 dimensions still fits in this.
constexpr uint64_t kMaxNpyHeaderBytes = uint64_t{1} << 20;
constexpr size_t kReadChunk = size_t{1} << 20;
constexpr size_t kMaxZlibChunk = size_t{1} << 30;  // zlib counts in uInt

// .npy (numpy/lib/format.py): magic, version, header length, a Python dict literal padded with spaces and a
// newline so that the data starts at a multiple of 64.
constexpr char kNpyMagic[] = "\x93NUMPY";
constexpr size_t kNpyMagicSize = 6;
constexpr size_t kNpyAlign = 64;
constexpr size_t kNpyGrowthDigits = 21;  // numpy leaves room for shape[0] to grow to 21 digits in place

uint16_t le16(const uint8_t* p) { return static_cast<uint16_t>(p[0] | (p[1] << 8)); }
uint32_t le32(const uint8_t* p) {
  return static_cast<uint32_t>(p[0]) | (static_cast<uint32_t>(p[1]) << 8) | (static_cast<uint32_t>(p[2]) << 16) |
         (static_cast<uint32_t>(p[3]) << 24);
}
uint64_t le64(const uint8_t* p) { return le32(p) | (static_cast<uint64_t>(le32(p + 4)) << 32); }

void put16(std::vector<uint8_t>& out, uint16_t v) {
  out.push_back(static_cast<uint8_t>(v));
  out.push_back(static_cast<uint8_t>(v >> 8));
}
void put32(std::vector<uint8_t>& out, uint32_t v) {
  put16(out, static_cast<uint16_t>(v));
  put16(out, static_cast<uint16_t>(v >> 16));
}
void put64(std::vector<uint8_t>& out, uint64_t v) {
  put32(out, static_cast<uint32_t>(v));
  put32(out, static_cast<uint32_t>(v >> 32));
}

std::string hex32(uint32_t v) {
  char text[16];
  std::snprintf(text, sizeof text, "0x%08x", v);
  return text;
}


uint32_t crc32_of(const uint8_t* data, size_t size, uint32_t crc = 0) {
  uLong value = crc;
  while (size > 0) {
    const size_t chunk = std::min(size, kMaxZlibChunk);
    value = crc32(value, data, static_cast<uInt>(chunk));
    data += chunk;
    size -= chunk;
  }
  return static_cast<uint32_t>(value);
}

// The element count of `shape`, multiplied left to right with overflow checks; false when it passes int64.
bool checked_elements(const std::vector<int64_t>& shape, int64_t* elements) {
  int64_t product = 1;
  for (const int64_t dim : shape) {
    if (dim < 0 || __builtin_mul_overflow(product, dim, &product)) return false;
  }
  *elements = product;
  return true;
}

bool checked_bytes(const std::vector<int64_t>& shape, NpyDtype dtype, uint64_t* bytes) {
  int64_t elements = 0;
  if (!checked_elements(shape, &elements)) return false;
  return !__builtin_mul_overflow(static_cast<uint64_t>(elements), npy_item_size(dtype), bytes) &&
         *bytes <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max());
}

// Python's repr of a shape tuple: (), (5,), (2, 3).
std::string shape_repr(const std::vector<int64_t>& shape) {
  std::string out = "(";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i > 0) out += ", ";
    out += std::to_string(shape[i]);
  }
  if (shape.size() == 1) out += ",";
  return out + ")";
}

// ---- Reading: where the bytes come from ------------------------------------------------------------------------

// read_npz reads what it needs with pread instead of the whole file, so that an archive costs its arrays' memory
// once, not twice; parse_npz reads the same way from memory. Callers check that the range lies inside size().
class ByteSource {
 public:
  virtual ~ByteSource() = default;
  virtual uint64_t size() const = 0;
  virtual void read(uint64_t offset, size_t count, uint8_t* out) const = 0;
};

class MemorySource : public ByteSource {
 public:
  explicit MemorySource(const std::vector<uint8_t>& bytes) : bytes_(bytes) {}
  uint64_t size() const override { return bytes_.size(); }
  void read(uint64_t offset, size_t count, uint8_t* out) const override {
    if (count > 0) std::memcpy(out, bytes_.data() + offset, count);
  }

 private:
  const std::vector<uint8_t>& bytes_;
};

class FileSource : public ByteSource {
 public:
  explicit FileSource(const std::string& path) : path_(path) {
    fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd_ < 0) throw DataError("cannot open " + path + ": " + std::strerror(errno));
    struct stat info {};
    if (::fstat(fd_, &info) != 0) {
      const int error = errno;
      ::close(fd_);
      throw DataError("cannot stat " + path + ": " + std::strerror(error));
    }
    if (!S_ISREG(info.st_mode)) {
      ::close(fd_);
      throw DataError("cannot read " + path + ": not a regular file");
    }
    size_ = static_cast<uint64_t>(info.st_size);
  }
  ~FileSource() override { ::close(fd_); }
  FileSource(const FileSource&) = delete;
  FileSource& operator=(const FileSource&) = delete;

  uint64_t size() const override { return size_; }
  void read(uint64_t offset, size_t count, uint8_t* out) const override {
    size_t done = 0;
    while (done < count) {
      const ssize_t got = ::pread(fd_, out + done, std::min(count - done, kMaxZlibChunk),
                                  static_cast<off_t>(offset + done));
      if (got < 0 && errno == EINTR) continue;
      if (got < 0) {
        throw DataError("cannot read " + path_ + " at offset " + std::to_string(offset + done) + ": " +
                        std::strerror(errno));
      }
      if (got == 0) {
        throw DataError("cannot read " + path_ + " at offset " + std::to_string(offset + done) +
                        ": the file ended early (did it shrink while being read?)");
      }
      done += static_cast<size_t>(got);
    }
  }

 private:
  std::string path_;
  int fd_ = -1;
  uint64_t size_ = 0;
};

struct InflateStream {
  z_stream z{};
  bool ready = false;
  InflateStream() { ready = inflateInit2(&z, -MAX_WBITS) == Z_OK; }  // raw deflate: ZIP has no zlib header
  ~InflateStream() {
    if (ready) inflateEnd(&z);
  }
  InflateStream(const InflateStream&) = delete;
  InflateStream& operator=(const InflateStream&) = delete;
};

// ---- Reading: the .npy header ----------------------------------------------------------------------------------

struct NpyHeader {
  NpyDtype dtype = NpyDtype::kUint8;
  std::vector<int64_t> shape;
  size_t data_offset = 0;  // the header's total size: where the data starts in the entry
};

// A syntax error in the header text; the reader turns it into a DataError with the file offset.
struct NpyHeaderSyntaxError {
  size_t position;  // from the start of the header text
  std::string what;
};

// The header dict, parsed as the Python literal numpy writes, strictly: the keys descr (a string), fortran_order
// (True or False) and shape (a tuple of non-negative ints) once each, in any order; spaces between tokens; then
// spaces and one final newline.
class NpyDictParser {
 public:
  explicit NpyDictParser(const std::string& text) : text_(text) {}

  void parse(std::string* descr, bool* fortran_order, std::vector<int64_t>* shape) {
    bool seen_descr = false, seen_fortran = false, seen_shape = false;
    skip_spaces();
    expect('{');
    while (true) {
      skip_spaces();
      if (peek() == '}') break;
      const size_t key_at = i_;
      const std::string key = string_literal();
      skip_spaces();
      expect(':');
      skip_spaces();
      if (key == "descr") {
        if (seen_descr) fail(key_at, "the key 'descr' appears twice");
        seen_descr = true;
        if (peek() != '\'' && peek() != '"') {
          fail(i_, "descr is not a string (structured and subarray dtypes are not supported)");
        }
        *descr = string_literal();
      } else if (key == "fortran_order") {
        if (seen_fortran) fail(key_at, "the key 'fortran_order' appears twice");
        seen_fortran = true;
        *fortran_order = boolean();
      } else if (key == "shape") {
        if (seen_shape) fail(key_at, "the key 'shape' appears twice");
        seen_shape = true;
        *shape = tuple();
      } else {
        fail(key_at, "unexpected key '" + printable_bytes(key) + "' (a .npy header has descr, fortran_order, shape)");
      }
      skip_spaces();
      if (peek() == ',') {
        ++i_;
        continue;
      }
      if (peek() != '}') fail(i_, "expected ',' or '}' in the header dict, got " + describe_here());
      break;
    }
    ++i_;  // '}'
    if (!seen_descr) fail(i_, "the header dict has no 'descr'");
    if (!seen_fortran) fail(i_, "the header dict has no 'fortran_order'");
    if (!seen_shape) fail(i_, "the header dict has no 'shape'");
    while (i_ + 1 < text_.size() && text_[i_] == ' ') ++i_;
    if (i_ + 1 != text_.size() || text_[i_] != '\n') {
      fail(i_, "the header does not end in spaces and a newline after its dict, got " + describe_here());
    }
  }

 private:
  [[noreturn]] static void fail(size_t position, const std::string& what) {
    throw NpyHeaderSyntaxError{position, what};
  }
  char peek() const { return i_ < text_.size() ? text_[i_] : '\0'; }
  void skip_spaces() {
    while (i_ < text_.size() && (text_[i_] == ' ' || text_[i_] == '\t')) ++i_;
  }
  std::string describe_here() const {
    if (i_ >= text_.size()) return "the end of the header";
    return "'" + printable_bytes(std::string(1, text_[i_])) + "'";
  }
  void expect(char c) {
    if (peek() != c) fail(i_, std::string("expected '") + c + "' in the header, got " + describe_here());
    ++i_;
  }
  std::string string_literal() {
    const char quote = peek();
    if (quote != '\'' && quote != '"') fail(i_, "expected a quoted string in the header, got " + describe_here());
    const size_t start = ++i_;
    while (i_ < text_.size() && text_[i_] != quote) {
      const auto byte = static_cast<unsigned char>(text_[i_]);
      if (text_[i_] == '\\' || byte < 0x20 || byte >= 0x7f) {
        fail(i_, "a string in the header holds an escape or a non-printable character (byte " +
                      std::to_string(byte) + ")");
      }
      ++i_;
    }
    if (i_ >= text_.size()) fail(start - 1, "an unterminated string in the header");
    return text_.substr(start, i_++ - start);
  }
  bool boolean() {
    if (text_.compare(i_, 4, "True") == 0) {
      i_ += 4;
      return true;
    }
    if (text_.compare(i_, 5, "False") == 0) {
      i_ += 5;
      return false;
    }
    fail(i_, "fortran_order is neither True nor False");
  }
  int64_t integer() {
    const size_t start = i_;
    int64_t value = 0;
    while (i_ < text_.size() && text_[i_] >= '0' && text_[i_] <= '9') {
      if (__builtin_mul_overflow(value, 10, &value) || __builtin_add_overflow(value, text_[i_] - '0', &value)) {
        fail(start, "a dimension of the shape is larger than 2^63 - 1");
      }
      ++i_;
    }
    if (i_ == start) fail(i_, "expected a dimension (a non-negative integer) in the shape, got " + describe_here());
    if (text_[start] == '0' && i_ - start > 1) fail(start, "a dimension of the shape has a leading zero");
    return value;
  }
  // (), (n,), (a, b), (a, b,): a Python tuple; (n) is an int, not a tuple.
  std::vector<int64_t> tuple() {
    std::vector<int64_t> dims;
    const size_t open_at = i_;
    expect('(');
    skip_spaces();
    if (peek() == ')') {
      ++i_;
      return dims;
    }
    while (true) {
      dims.push_back(integer());
      skip_spaces();
      if (peek() == ')') {
        if (dims.size() == 1) fail(open_at, "the shape (n) is an int, not a tuple: a 1-d shape is written (n,)");
        ++i_;
        return dims;
      }
      expect(',');
      skip_spaces();
      if (peek() == ')') {
        ++i_;
        return dims;
      }
    }
  }

  const std::string& text_;
  size_t i_ = 0;
};

// ---- Reading: the archive --------------------------------------------------------------------------------------

struct Entry {
  std::string zip_name;  // as stored, with ".npy"
  std::string label;     // printable, for messages
  uint64_t central_offset = 0;
  uint16_t flags = 0;
  uint16_t method = 0;
  uint32_t crc = 0;
  uint64_t compressed = 0;
  uint64_t uncompressed = 0;
  uint64_t local_offset = 0;
  uint64_t data_offset = 0;  // from the local header
  uint64_t end = 0;          // one past the entry's last byte (data descriptor included)
};

// A header's ZIP64 extended-information extra field: the 8-byte values of the fields the header marks with
// 0xFFFFFFFF (the 4-byte disk for 0xFFFF), in the order APPNOTE 4.5.3 gives.
struct Zip64Fields {
  bool present = false;
  const uint8_t* data = nullptr;
  size_t size = 0;
};

class ArchiveReader {
 public:
  ArchiveReader(const ByteSource& source, const std::string& name) : source_(source), name_(name) {}

  std::map<std::string, NpyArray> read_all() {
    std::map<std::string, NpyArray> arrays;
    for (const Entry& entry : index()) arrays.emplace(array_name(entry), read_array(entry));
    return arrays;
  }

  static std::string array_name(const Entry& entry) { return entry.zip_name.substr(0, entry.zip_name.size() - 4); }

  // Every entry, its central and local headers read and checked, none of its data yet.
  std::vector<Entry> index() {
    locate_central_directory();
    std::vector<Entry> entries = read_central_directory();
    // In file order (central directory order for ties), so that an entry starting inside the one before it is
    // reported as an overlap, not as the broken local header it then appears to have.
    std::vector<Entry*> by_offset;
    for (Entry& entry : entries) by_offset.push_back(&entry);
    std::stable_sort(by_offset.begin(), by_offset.end(),
                     [](const Entry* a, const Entry* b) { return a->local_offset < b->local_offset; });
    const Entry* previous = nullptr;
    for (Entry* entry : by_offset) {
      if (previous != nullptr && entry->local_offset < previous->end) {
        fail_entry(*entry, entry->local_offset,
                   "overlaps entry '" + previous->label + "' (offsets " + std::to_string(previous->local_offset) +
                       " to " + std::to_string(previous->end) + ")");
      }
      read_local_header(*entry);
      previous = entry;
    }
    return entries;
  }

  // A stored entry checked as read_array checks it, without holding it: its CRC-32 over passes of kReadChunk
  // bytes, then the .npy header from the entry's first bytes. Returns the header; the data stays in the file.
  NpyHeader check_stored(const Entry& entry) const {
    check_range(entry.data_offset, entry.compressed, "the data", &entry);
    std::vector<uint8_t> buffer(static_cast<size_t>(std::min<uint64_t>(entry.compressed, kReadChunk)));
    uint32_t crc = 0;
    for (uint64_t done = 0; done < entry.compressed;) {
      const size_t count = static_cast<size_t>(std::min<uint64_t>(buffer.size(), entry.compressed - done));
      source_.read(entry.data_offset + done, count, buffer.data());
      crc = crc32_of(buffer.data(), count, crc);
      done += count;
    }
    check_crc(entry, crc);
    const std::vector<uint8_t> head =
        read_at(entry.data_offset, std::min<uint64_t>(entry.compressed, 12 + kMaxNpyHeaderBytes), "the data", &entry);
    return parse_npy_header(entry, head.data(), head.size(), entry.compressed);
  }

  bool stored(const Entry& entry) const { return entry.method == kMethodStored; }
  NpyArray read(const Entry& entry) const { return read_array(entry); }

 private:
  [[noreturn]] void fail(uint64_t offset, const std::string& what) const {
    throw DataError(name_ + ": " + what + " (at offset " + std::to_string(offset) + ")");
  }
  [[noreturn]] void fail_entry(const Entry& entry, uint64_t offset, const std::string& what) const {
    throw DataError(name_ + ": entry '" + entry.label + "': " + what + " (at offset " + std::to_string(offset) + ")");
  }

  // `count` bytes at `offset`, or a truncation error naming `what`.
  std::vector<uint8_t> read_at(uint64_t offset, uint64_t count, const std::string& what,
                               const Entry* entry = nullptr) const {
    check_range(offset, count, what, entry);
    std::vector<uint8_t> bytes(static_cast<size_t>(count));
    source_.read(offset, bytes.size(), bytes.data());
    return bytes;
  }

  void check_range(uint64_t offset, uint64_t count, const std::string& what, const Entry* entry) const {
    if (offset > source_.size() || count > source_.size() - offset) {
      const std::string message = "truncated: " + what + " (" + std::to_string(count) +
                                  " bytes) runs past the end of the file (" + std::to_string(source_.size()) +
                                  " bytes)";
      if (entry != nullptr) fail_entry(*entry, offset, message);
      fail(offset, message);
    }
  }

  // The end-of-central-directory record (the last one whose comment runs exactly to the end of the file), and the
  // ZIP64 record its locator points to when there is one: where the central directory is and how many entries.
  void locate_central_directory() {
    const uint64_t size = source_.size();
    if (size < kEndSize) {
      fail(0, "not a ZIP archive: " + std::to_string(size) + " bytes, fewer than an end-of-central-directory record");
    }
    const uint64_t tail_size = std::min(size, kEndSize + kMaxCommentSize);
    const uint64_t tail_start = size - tail_size;
    const std::vector<uint8_t> tail = read_at(tail_start, tail_size, "the end of the file");
    uint64_t end_at = 0;
    bool found = false;
    for (uint64_t pos = tail_size - kEndSize + 1; pos-- > 0;) {
      if (le32(&tail[pos]) == kEndSignature && le16(&tail[pos + 20]) == tail_size - pos - kEndSize) {
        end_at = tail_start + pos;
        found = true;
        break;
      }
    }
    if (!found) {
      fail(tail_start, "not a ZIP archive, or truncated: no end-of-central-directory record in its last " +
                           std::to_string(tail_size) + " bytes");
    }
    const uint8_t* end = &tail[end_at - tail_start];
    const uint16_t disk = le16(end + 4), cd_disk = le16(end + 6);
    uint64_t entries_here = le16(end + 8), entries = le16(end + 10);
    uint64_t cd_size = le32(end + 12), cd_offset = le32(end + 16);
    uint64_t cd_end = end_at;

    const bool has_locator = end_at >= kZip64LocatorSize &&
                             le32(read_at(end_at - kZip64LocatorSize, 4, "the ZIP64 locator").data()) ==
                                 kZip64LocatorSignature;
    if (has_locator) {
      const uint64_t locator_at = end_at - kZip64LocatorSize;
      const std::vector<uint8_t> locator = read_at(locator_at, kZip64LocatorSize, "the ZIP64 locator");
      const uint32_t record_disk = le32(&locator[4]), disks = le32(&locator[16]);
      const uint64_t record_at = le64(&locator[8]);
      if (record_disk != 0 || disks > 1) fail(locator_at, "a multi-disk (split) ZIP archive is not supported");
      if (record_at > locator_at || locator_at - record_at < kZip64EndSize) {
        fail(locator_at, "the ZIP64 locator points to offset " + std::to_string(record_at) +
                             ", which leaves no room for the ZIP64 end-of-central-directory record before it");
      }
      const std::vector<uint8_t> record = read_at(record_at, kZip64EndSize, "the ZIP64 end-of-central-directory");
      if (le32(&record[0]) != kZip64EndSignature) {
        fail(record_at, "no ZIP64 end-of-central-directory record where the ZIP64 locator points");
      }
      if (le64(&record[4]) != locator_at - record_at - 12) {
        fail(record_at, "the ZIP64 end-of-central-directory record's size (" + std::to_string(le64(&record[4])) +
                            ") does not reach the ZIP64 locator at offset " + std::to_string(locator_at));
      }
      if (le32(&record[16]) != 0 || le32(&record[20]) != 0) {
        fail(record_at, "a multi-disk (split) ZIP archive is not supported");
      }
      const uint64_t entries64_here = le64(&record[24]), entries64 = le64(&record[32]);
      const uint64_t cd_size64 = le64(&record[40]), cd_offset64 = le64(&record[48]);
      // The plain record holds either the 0xFFFF... placeholder or the same value.
      const auto agrees = [](uint64_t plain, uint64_t sentinel, uint64_t wide) {
        return plain == sentinel || plain == wide;
      };
      if (!agrees(entries_here, kSentinel16, entries64_here) || !agrees(entries, kSentinel16, entries64) ||
          !agrees(cd_size, kSentinel32, cd_size64) || !agrees(cd_offset, kSentinel32, cd_offset64) ||
          !agrees(disk, kSentinel16, 0) || !agrees(cd_disk, kSentinel16, 0)) {
        fail(end_at, "the end-of-central-directory record disagrees with the ZIP64 one at offset " +
                         std::to_string(record_at));
      }
      entries_here = entries64_here;
      entries = entries64;
      cd_size = cd_size64;
      cd_offset = cd_offset64;
      cd_end = record_at;
    } else if (disk != 0 || cd_disk != 0) {
      fail(end_at, "a multi-disk (split) ZIP archive is not supported");
    }
    if (entries_here != entries) fail(end_at, "a multi-disk (split) ZIP archive is not supported");
    if (cd_offset > cd_end || cd_size != cd_end - cd_offset) {
      fail(end_at, "the central directory (offset " + std::to_string(cd_offset) + ", " + std::to_string(cd_size) +
                       " bytes) does not end where the end-of-central-directory records start (offset " +
                       std::to_string(cd_end) + "): a truncated or corrupt file, or data before the archive");
    }
    if (entries > cd_size / kCentralHeaderSize) {
      fail(end_at, "the end-of-central-directory record counts " + std::to_string(entries) +
                       " entries, more than its central directory of " + std::to_string(cd_size) + " bytes holds");
    }
    cd_offset_ = cd_offset;
    cd_size_ = cd_size;
    entry_count_ = entries;
  }

  // The extra-field block as (id, size, data) records; only the ZIP64 one is used. Malformed blocks are refused.
  Zip64Fields zip64_extra(const Entry& entry, const uint8_t* extra, size_t size, uint64_t offset,
                          const char* header) const {
    Zip64Fields fields;
    size_t pos = 0;
    while (pos < size) {
      if (size - pos < 4) {
        fail_entry(entry, offset + pos, std::string("the ") + header + "'s extra field ends inside a record header");
      }
      const uint16_t id = le16(extra + pos), length = le16(extra + pos + 2);
      if (length > size - pos - 4) {
        fail_entry(entry, offset + pos,
                   std::string("an extra-field record of the ") + header + " runs past the extra field's end");
      }
      if (id == kZip64ExtraId) {
        if (fields.present) fail_entry(entry, offset + pos, std::string("two ZIP64 extra fields in the ") + header);
        fields.present = true;
        fields.data = extra + pos + 4;
        fields.size = length;
      }
      pos += 4 + size_t{length};
    }
    return fields;
  }

  std::vector<Entry> read_central_directory() {
    const std::vector<uint8_t> cd = read_at(cd_offset_, cd_size_, "the central directory");
    std::vector<Entry> entries;
    std::map<std::string, uint64_t> seen;  // array name -> central directory offset
    size_t pos = 0;
    for (uint64_t index = 0; index < entry_count_; ++index) {
      const uint64_t at = cd_offset_ + pos;
      const std::string record = "central directory record " + std::to_string(index);
      if (cd.size() - pos < kCentralHeaderSize) fail(at, "truncated " + record);
      const uint8_t* p = &cd[pos];
      if (le32(p) != kCentralHeaderSignature) fail(at, "no central directory header signature for " + record);
      const size_t name_size = le16(p + 28), extra_size = le16(p + 30), comment_size = le16(p + 32);
      if (cd.size() - pos - kCentralHeaderSize < name_size + extra_size + comment_size) {
        fail(at, record + " runs past the end of the central directory");
      }
      Entry entry;
      entry.zip_name.assign(reinterpret_cast<const char*>(p + kCentralHeaderSize), name_size);
      entry.label = printable_bytes(entry.zip_name);
      entry.central_offset = at;
      entry.flags = le16(p + 8);
      entry.method = le16(p + 10);
      entry.crc = le32(p + 16);
      entry.compressed = le32(p + 20);
      entry.uncompressed = le32(p + 24);
      const uint16_t disk = le16(p + 34);
      entry.local_offset = le32(p + 42);
      const uint64_t extra_at = at + kCentralHeaderSize + name_size;
      const Zip64Fields zip64 =
          zip64_extra(entry, p + kCentralHeaderSize + name_size, extra_size, extra_at, "central directory header");
      size_t used = 0;
      const auto wide = [&](uint64_t* field, const char* what) {
        if (!zip64.present || zip64.size - used < 8) {
          fail_entry(entry, extra_at,
                     std::string("the central directory header marks the ") + what +
                         " as ZIP64 (0xFFFFFFFF), but its ZIP64 extra field does not hold it");
        }
        *field = le64(zip64.data + used);
        used += 8;
      };
      if (entry.uncompressed == kSentinel32) wide(&entry.uncompressed, "uncompressed size");
      if (entry.compressed == kSentinel32) wide(&entry.compressed, "compressed size");
      if (entry.local_offset == kSentinel32) wide(&entry.local_offset, "local header offset");
      if (disk == kSentinel16) {
        if (!zip64.present || zip64.size - used < 4 || le32(zip64.data + used) != 0) {
          fail_entry(entry, at, "the entry starts on another disk (a split archive is not supported)");
        }
      } else if (disk != 0) {
        fail_entry(entry, at,
                   "the entry starts on disk " + std::to_string(disk) + " (split archives are not supported)");
      }
      check_entry_fields(entry);
      const std::string array_name = entry.zip_name.substr(0, entry.zip_name.size() - 4);
      const auto [it, inserted] = seen.emplace(array_name, at);
      if (!inserted) {
        fail_entry(entry, at, "a second entry of this name (the first is at central directory offset " +
                                  std::to_string(it->second) + ")");
      }
      entries.push_back(std::move(entry));
      pos += kCentralHeaderSize + name_size + extra_size + comment_size;
    }
    if (pos != cd.size()) {
      fail(cd_offset_ + pos, std::to_string(cd.size() - pos) + " bytes after the " + std::to_string(entry_count_) +
                                 " entries the end-of-central-directory record counts");
    }
    return entries;
  }

  void check_entry_fields(const Entry& entry) const {
    const uint64_t at = entry.central_offset;
    if (entry.flags & (kFlagEncrypted | kFlagStrongEncryption | kFlagMaskedHeaders)) {
      fail_entry(entry, at, "an encrypted entry (not supported)");
    }
    if (entry.method != kMethodStored && entry.method != kMethodDeflated) {
      fail_entry(entry, at, "compression method " + std::to_string(entry.method) +
                                " is not supported (only 0, stored, and 8, deflated)");
    }
    if (entry.zip_name.size() <= 4 || entry.zip_name.compare(entry.zip_name.size() - 4, 4, ".npy") != 0) {
      fail_entry(entry, at, "not a .npy file: an .npz entry's name is the array's name and \".npy\"");
    }
    if (entry.zip_name.find('\0') != std::string::npos) fail_entry(entry, at, "the name holds a NUL byte");
    if (entry.method == kMethodStored && entry.compressed != entry.uncompressed) {
      fail_entry(entry, at, "a stored entry whose compressed size (" + std::to_string(entry.compressed) +
                                ") differs from its uncompressed size (" + std::to_string(entry.uncompressed) + ")");
    }
    if (entry.method == kMethodDeflated) {
      if (entry.uncompressed > kMaxInflatedEntry) {
        fail_entry(entry, at, "declares " + std::to_string(entry.uncompressed) +
                                  " uncompressed bytes, more than the limit of 64 GiB");
      }
      if (entry.uncompressed > entry.compressed * kMaxDeflateRatio) {  // compressed < 2^44 here: no overflow
        fail_entry(entry, at, "declares " + std::to_string(entry.uncompressed) + " uncompressed bytes from " +
                                  std::to_string(entry.compressed) +
                                  " compressed ones, more than deflate's largest ratio (1032:1) allows");
      }
    }
  }

  // The local header: inside the file and before the central directory, and agreeing with the central directory
  // (the truth) on the name, method, flags, CRC and sizes; it gives where the data starts.
  void read_local_header(Entry& entry) const {
    const uint64_t at = entry.local_offset;
    if (at > source_.size() || source_.size() - at < kLocalHeaderSize) {
      fail_entry(entry, entry.central_offset, "the local header offset " + std::to_string(at) +
                                                  " lies past the end of the file (" +
                                                  std::to_string(source_.size()) + " bytes)");
    }
    if (at >= cd_offset_ || cd_offset_ - at < kLocalHeaderSize) {
      fail_entry(entry, entry.central_offset, "the local header offset " + std::to_string(at) +
                                                  " is not before the central directory (offset " +
                                                  std::to_string(cd_offset_) + ")");
    }
    const std::vector<uint8_t> fixed = read_at(at, kLocalHeaderSize, "the local header", &entry);
    if (le32(&fixed[0]) != kLocalHeaderSignature) fail_entry(entry, at, "no local header signature");
    const uint16_t flags = le16(&fixed[6]), method = le16(&fixed[8]);
    const uint32_t crc = le32(&fixed[14]);
    uint64_t compressed = le32(&fixed[18]), uncompressed = le32(&fixed[22]);
    const uint64_t name_size = le16(&fixed[26]), extra_size = le16(&fixed[28]);
    if (cd_offset_ - at - kLocalHeaderSize < name_size + extra_size) {
      fail_entry(entry, at, "the local header's name and extra field run into the central directory");
    }
    const std::vector<uint8_t> variable =
        read_at(at + kLocalHeaderSize, name_size + extra_size, "the local header's name and extra field", &entry);
    if (std::string(reinterpret_cast<const char*>(variable.data()), name_size) != entry.zip_name) {
      fail_entry(entry, at,
                 "the local header names '" +
                     printable_bytes(std::string(reinterpret_cast<const char*>(variable.data()), name_size)) +
                     "', the central directory '" + entry.label + "'");
    }
    if (method != entry.method) {
      fail_entry(entry, at, "the local header's compression method " + std::to_string(method) +
                                " differs from the central directory's " + std::to_string(entry.method));
    }
    if ((flags ^ entry.flags) & (kFlagEncrypted | kFlagDataDescriptor)) {
      fail_entry(entry, at, "the local header's flags differ from the central directory's");
    }
    const uint64_t extra_at = at + kLocalHeaderSize + name_size;
    const Zip64Fields zip64 = zip64_extra(entry, variable.data() + name_size, extra_size, extra_at, "local header");
    if (compressed == kSentinel32 || uncompressed == kSentinel32) {
      // In a local header the ZIP64 field holds both sizes (APPNOTE 4.5.3).
      if (!zip64.present || zip64.size < 16) {
        fail_entry(entry, extra_at, "the local header marks its sizes as ZIP64, but has no ZIP64 field holding both");
      }
      uncompressed = le64(zip64.data);
      compressed = le64(zip64.data + 8);
    }
    const bool descriptor = (flags & kFlagDataDescriptor) != 0;
    if (!descriptor && (crc != entry.crc || compressed != entry.compressed || uncompressed != entry.uncompressed)) {
      fail_entry(entry, at,
                 "the local header (CRC " + hex32(crc) + ", " + std::to_string(compressed) + " -> " +
                     std::to_string(uncompressed) + " bytes) disagrees with the central directory (CRC " +
                     hex32(entry.crc) + ", " + std::to_string(entry.compressed) + " -> " +
                     std::to_string(entry.uncompressed) + " bytes)");
    }
    entry.data_offset = extra_at + extra_size;
    if (cd_offset_ - entry.data_offset < entry.compressed) {
      const std::string where = entry.compressed > source_.size() - entry.data_offset
                                    ? "the end of the file (" + std::to_string(source_.size()) + " bytes)"
                                    : "the central directory (offset " + std::to_string(cd_offset_) + ")";
      fail_entry(entry, entry.data_offset,
                 "its " + std::to_string(entry.compressed) + " bytes of data run past " + where);
    }
    entry.end = entry.data_offset + entry.compressed;
    if (descriptor) read_data_descriptor(entry, zip64.present);
  }

  // After the data when flag bit 3 is set (a writer that could not seek back): an optional signature, the CRC and
  // the sizes, 8 bytes each when the local header has a ZIP64 field.
  void read_data_descriptor(Entry& entry, bool wide) const {
    const uint64_t at = entry.end;
    const uint64_t size_bytes = wide ? 8 : 4;
    const uint64_t available = cd_offset_ - at;
    const uint64_t peek_size = std::min<uint64_t>(available, 4 + 4 + 2 * size_bytes);
    const std::vector<uint8_t> bytes = read_at(at, peek_size, "the data descriptor", &entry);
    const uint64_t start = bytes.size() >= 4 && le32(bytes.data()) == kDataDescriptorSignature ? 4 : 0;
    if (bytes.size() < start + 4 + 2 * size_bytes) {
      fail_entry(entry, at, "the data descriptor runs into the central directory");
    }
    const uint8_t* p = bytes.data() + start;
    const uint32_t crc = le32(p);
    const uint64_t compressed = wide ? le64(p + 4) : le32(p + 4);
    const uint64_t uncompressed = wide ? le64(p + 12) : le32(p + 8);
    if (crc != entry.crc || compressed != entry.compressed || uncompressed != entry.uncompressed) {
      fail_entry(entry, at, "the data descriptor disagrees with the central directory");
    }
    entry.end = at + start + 4 + 2 * size_bytes;
  }

  std::vector<uint8_t> stored_bytes(const Entry& entry) const {
    return read_at(entry.data_offset, entry.compressed, "the data", &entry);
  }

  // Inflates into exactly the declared size: more output than that, or less, is an error, and so is input left
  // after the end of the deflate stream.
  std::vector<uint8_t> inflated_bytes(const Entry& entry) const {
    InflateStream stream;
    if (!stream.ready) fail_entry(entry, entry.data_offset, "zlib could not start inflating");
    z_stream& z = stream.z;
    std::vector<uint8_t> out(static_cast<size_t>(entry.uncompressed));
    std::vector<uint8_t> in(static_cast<size_t>(std::min<uint64_t>(entry.compressed, kReadChunk)));
    uint8_t spill = 0;  // where output past the declared size would go
    uint64_t fed = 0, produced = 0;
    while (true) {
      if (z.avail_in == 0 && fed < entry.compressed) {
        const size_t count = static_cast<size_t>(std::min<uint64_t>(in.size(), entry.compressed - fed));
        source_.read(entry.data_offset + fed, count, in.data());
        z.next_in = in.data();
        z.avail_in = static_cast<uInt>(count);
        fed += count;
      }
      const bool full = produced == entry.uncompressed;
      z.next_out = full ? &spill : out.data() + produced;
      z.avail_out = full ? 1 : static_cast<uInt>(std::min<uint64_t>(entry.uncompressed - produced, kMaxZlibChunk));
      const uInt room = z.avail_out;
      const int rc = inflate(&z, Z_NO_FLUSH);
      const uint64_t consumed = fed - z.avail_in;
      if (full && z.avail_out != room) {
        fail_entry(entry, entry.data_offset + consumed,
                   "the deflated data inflates to more than the " + std::to_string(entry.uncompressed) +
                       " bytes the central directory declares");
      }
      if (!full) produced += room - z.avail_out;
      if (rc == Z_STREAM_END) break;
      if (rc == Z_OK) continue;
      if (rc == Z_BUF_ERROR && z.avail_in == 0 && fed == entry.compressed) {
        fail_entry(entry, entry.data_offset + consumed,
                   "the deflated data (" + std::to_string(entry.compressed) +
                       " bytes) ends before its deflate stream does, after " + std::to_string(produced) +
                       " inflated bytes: truncated or corrupt");
      }
      fail_entry(entry, entry.data_offset + consumed,
                 std::string("corrupt deflated data: ") +
                     (z.msg != nullptr ? z.msg : "zlib error " + std::to_string(rc)));
    }
    const uint64_t consumed = fed - z.avail_in;
    if (consumed != entry.compressed) {
      fail_entry(entry, entry.data_offset + consumed,
                 std::to_string(entry.compressed - consumed) + " bytes after the end of the deflate stream");
    }
    if (produced != entry.uncompressed) {
      fail_entry(entry, entry.data_offset,
                 "the deflated data inflates to " + std::to_string(produced) +
                     " bytes, the central directory declares " +
                     std::to_string(entry.uncompressed));
    }
    return out;
  }

  NpyArray read_array(const Entry& entry) const {
    std::vector<uint8_t> bytes = entry.method == kMethodStored ? stored_bytes(entry) : inflated_bytes(entry);
    check_crc(entry, crc32_of(bytes.data(), bytes.size()));
    const NpyHeader header = parse_npy_header(entry, bytes.data(), bytes.size(), bytes.size());
    NpyArray array;
    array.dtype = header.dtype;
    array.shape = header.shape;
    bytes.erase(bytes.begin(), bytes.begin() + static_cast<std::ptrdiff_t>(header.data_offset));
    array.bytes = std::move(bytes);
    return array;
  }

  void check_crc(const Entry& entry, uint32_t crc) const {
    if (crc != entry.crc) {
      fail_entry(entry, entry.data_offset,
                 "CRC-32 mismatch: the central directory says " + hex32(entry.crc) + ", the data's is " + hex32(crc));
    }
  }

  // Offsets in messages are the file's for a stored entry; for a deflated one, the inflated entry's.
  [[noreturn]] void fail_npy(const Entry& entry, uint64_t position, const std::string& what) const {
    if (entry.method == kMethodStored) fail_entry(entry, entry.data_offset + position, what);
    throw DataError(name_ + ": entry '" + entry.label + "': " + what + " (at byte " + std::to_string(position) +
                    " of the inflated entry, whose deflated data starts at offset " +
                    std::to_string(entry.data_offset) + ")");
  }

  // bytes: the entry's first `available` bytes of `total` (all of them, or at least the header's largest size).
  NpyHeader parse_npy_header(const Entry& entry, const uint8_t* bytes, uint64_t available, uint64_t total) const {
    if (available < kNpyMagicSize + 2 || std::memcmp(bytes, kNpyMagic, kNpyMagicSize) != 0) {
      fail_npy(entry, 0, "not a .npy file: no \\x93NUMPY magic");
    }
    const uint8_t major = bytes[6], minor = bytes[7];
    if ((major != 1 && major != 2 && major != 3) || minor != 0) {
      fail_npy(entry, 6, ".npy format version " + std::to_string(major) + "." + std::to_string(minor) +
                     " is not supported (1.0, 2.0 and 3.0 are)");
    }
    const size_t prefix = major == 1 ? 10 : 12;
    if (available < prefix) fail_npy(entry, 8, "truncated .npy header length");
    const uint64_t header_size = major == 1 ? le16(&bytes[8]) : le32(&bytes[8]);
    if (header_size > kMaxNpyHeaderBytes) {
      fail_npy(entry, 8, "a .npy header of " + std::to_string(header_size) + " bytes, more than the limit of " +
                     std::to_string(kMaxNpyHeaderBytes));
    }
    if (available - prefix < header_size) {
      fail_npy(entry, 8, "truncated .npy header: " + std::to_string(header_size) + " bytes declared, " +
                     std::to_string(available - prefix) + " present");
    }
    const std::string text(reinterpret_cast<const char*>(&bytes[prefix]), static_cast<size_t>(header_size));
    std::string descr;
    bool fortran_order = false;
    NpyHeader header;
    try {
      NpyDictParser(text).parse(&descr, &fortran_order, &header.shape);
    } catch (const NpyHeaderSyntaxError& error) {
      fail_npy(entry, prefix + error.position, error.what);
    }
    if (descr == "|u1" || descr == "<u1") {
      header.dtype = NpyDtype::kUint8;
    } else if (descr == "<f4") {
      header.dtype = NpyDtype::kFloat32;
    } else if (descr == "<f8") {
      header.dtype = NpyDtype::kFloat64;
    } else {
      fail_npy(entry, prefix, "dtype '" + printable_bytes(descr) + "' is not supported (only '|u1', '<f4' and '<f8' are)");
    }
    if (fortran_order) fail_npy(entry, prefix, "fortran_order True is not supported (C order only)");
    header.data_offset = prefix + static_cast<size_t>(header_size);
    uint64_t expected = 0;
    if (!checked_bytes(header.shape, header.dtype, &expected)) {
      fail_npy(entry, prefix, "the shape " + shape_repr(header.shape) + " of dtype '" + descr + "' overflows 64 bits");
    }
    const uint64_t present = total - header.data_offset;
    if (present != expected) {
      fail_npy(entry, header.data_offset, "the shape " + shape_repr(header.shape) + " of dtype '" + descr + "' needs " +
                                      std::to_string(expected) + " bytes of data, the entry holds " +
                                      std::to_string(present));
    }
    return header;
  }

  const ByteSource& source_;
  const std::string& name_;
  uint64_t cd_offset_ = 0;
  uint64_t cd_size_ = 0;
  uint64_t entry_count_ = 0;
};

// The .npy header numpy writes for this array, byte for byte (format.py's _write_array_header): the dict with
// sorted keys, room for shape[0] to grow to 21 digits, spaces and a newline up to a multiple of 64; version 1.0,
// or 2.0 when the header length does not fit in 16 bits.
std::vector<uint8_t> npy_header(NpyDtype dtype, const std::vector<int64_t>& shape) {
  std::string dict = std::string("{'descr': '") + npy_descr(dtype) + "', 'fortran_order': False, 'shape': " +
                     shape_repr(shape) + ", }";
  if (!shape.empty()) {
    const size_t digits = std::to_string(shape[0]).size();
    if (digits < kNpyGrowthDigits) dict.append(kNpyGrowthDigits - digits, ' ');
  }
  const auto padded = [&](size_t prefix) {
    const size_t unpadded = dict.size() + 1;  // + '\n'
    return unpadded + (kNpyAlign - (prefix + unpadded) % kNpyAlign);
  };
  const bool v1 = padded(10) <= 0xFFFF;
  const size_t prefix = v1 ? 10 : 12;
  const size_t header_size = padded(prefix);
  std::vector<uint8_t> out(kNpyMagic, kNpyMagic + kNpyMagicSize);
  out.push_back(v1 ? 1 : 2);
  out.push_back(0);
  if (v1) {
    put16(out, static_cast<uint16_t>(header_size));
  } else {
    put32(out, static_cast<uint32_t>(header_size));
  }
  out.insert(out.end(), dict.begin(), dict.end());
  out.resize(prefix + header_size - 1, ' ');
  out.push_back('\n');
  return out;
}

}  // namespace

size_t npy_item_size(NpyDtype dtype) {
  switch (dtype) {
    case NpyDtype::kUint8:
      return 1;
    case NpyDtype::kFloat32:
      return 4;
    case NpyDtype::kFloat64:
      return 8;
  }
  throw std::invalid_argument("npy_item_size: not a NpyDtype");
}

const char* npy_descr(NpyDtype dtype) {
  switch (dtype) {
    case NpyDtype::kUint8:
      return "|u1";
    case NpyDtype::kFloat32:
      return "<f4";
    case NpyDtype::kFloat64:
      return "<f8";
  }
  throw std::invalid_argument("npy_descr: not a NpyDtype");
}

int64_t NpyArray::elements() const {
  int64_t count = 0;
  if (!checked_elements(shape, &count)) {
    throw std::overflow_error("NpyArray: the shape " + shape_repr(shape) + " has a negative dimension or overflows");
  }
  return count;
}

std::map<std::string, NpyArray> parse_npz(const std::vector<uint8_t>& bytes, const std::string& name) {
  const MemorySource source(bytes);
  return ArchiveReader(source, name).read_all();
}

std::map<std::string, NpyArray> read_npz(const std::string& path) {
  const FileSource source(path);
  return ArchiveReader(source, path).read_all();
}

// ---- Reading rows on demand -------------------------------------------------------------------------------------

int64_t NpyArrayInfo::rows() const { return shape.empty() ? 0 : shape.front(); }

uint64_t NpyArrayInfo::row_bytes() const {
  uint64_t bytes = npy_item_size(dtype);
  for (size_t d = 1; d < shape.size(); ++d) bytes *= static_cast<uint64_t>(shape[d]);  // checked at open
  return bytes;
}

struct NpzFile::Impl {
  struct Array {
    NpyArrayInfo info;
    uint64_t data_offset = 0;  // a stored entry's: where its array data starts in the file
    std::optional<NpyArray> inflated;  // a deflated entry's: the whole array, inflated at open
  };
  std::string path;
  std::unique_ptr<FileSource> source;
  std::map<std::string, Array> arrays;

  const Array& find(const std::string& name) const {
    const auto found = arrays.find(name);
    if (found == arrays.end()) throw DataError(path + ": no array '" + name + "'");
    return found->second;
  }
};

NpzFile::NpzFile(const std::string& path) : impl_(std::make_unique<Impl>()) {
  impl_->path = path;
  impl_->source = std::make_unique<FileSource>(path);
  ArchiveReader reader(*impl_->source, impl_->path);
  for (const Entry& entry : reader.index()) {
    Impl::Array array;
    if (reader.stored(entry)) {
      const NpyHeader header = reader.check_stored(entry);
      array.info = {header.dtype, header.shape};
      array.data_offset = entry.data_offset + header.data_offset;
    } else {
      NpyArray whole = reader.read(entry);
      array.info = {whole.dtype, whole.shape};
      array.inflated = std::move(whole);
    }
    impl_->arrays.emplace(ArchiveReader::array_name(entry), std::move(array));
  }
}

NpzFile::~NpzFile() = default;

const std::string& NpzFile::path() const { return impl_->path; }

std::vector<std::string> NpzFile::names() const {
  std::vector<std::string> names;
  for (const auto& [name, array] : impl_->arrays) names.push_back(name);
  return names;
}

bool NpzFile::contains(const std::string& name) const { return impl_->arrays.count(name) > 0; }

const NpyArrayInfo& NpzFile::info(const std::string& name) const { return impl_->find(name).info; }

NpyArray NpzFile::read(const std::string& name) const {
  const Impl::Array& array = impl_->find(name);
  if (array.inflated) return *array.inflated;
  NpyArray out;
  out.dtype = array.info.dtype;
  out.shape = array.info.shape;
  out.bytes.resize(static_cast<size_t>(out.elements()) * npy_item_size(out.dtype));
  impl_->source->read(array.data_offset, out.bytes.size(), out.bytes.data());
  return out;
}

void NpzFile::read_rows(const std::string& name, int64_t first, int64_t count, void* out) const {
  const Impl::Array& array = impl_->find(name);
  const int64_t rows = array.info.rows();
  if (array.info.shape.empty() || first < 0 || count < 0 || first > rows || count > rows - first) {
    throw std::out_of_range(impl_->path + ": rows " + std::to_string(first) + " to " + std::to_string(first + count) +
                            " of '" + name + "', which has " + std::to_string(rows) +
                            (array.info.shape.empty() ? " (a 0-d array)" : ""));
  }
  const uint64_t row = array.info.row_bytes();
  const size_t bytes = static_cast<size_t>(row * static_cast<uint64_t>(count));
  const uint64_t offset = row * static_cast<uint64_t>(first);
  if (array.inflated) {
    if (bytes > 0) std::memcpy(out, array.inflated->bytes.data() + offset, bytes);
    return;
  }
  impl_->source->read(array.data_offset + offset, bytes, static_cast<uint8_t*>(out));
}

// ---- Writing ---------------------------------------------------------------------------------------------------

struct NpzWriter::Impl {
  struct Written {
    std::string zip_name;
    uint16_t flags = 0;
    uint32_t crc = 0;
    uint64_t size = 0;
    uint64_t local_offset = 0;
    bool zip64 = false;
  };

  std::string path;
  std::string temp_path;
  uint64_t zip64_limit = kNpzZip64Limit;
  int fd = -1;
  std::vector<uint8_t> buffer;  // bytes not yet handed to write(2); they end at `position`
  uint64_t position = 0;        // the archive's size so far, buffer included
  std::vector<Written> entries;
  std::set<std::string> names;
  bool in_entry = false;
  Written current;
  std::string current_name;
  uint64_t remaining = 0;  // data bytes the current array still needs
  bool committed = false;
  bool broken = false;  // an error left the temporary file incomplete: only the destructor is left to run

  [[noreturn]] void fail(const std::string& what) const { throw std::runtime_error(path + ": " + what); }
  [[noreturn]] void fail_io(const std::string& what) {
    const int error = errno;
    broken = true;
    fail(what + ": " + std::strerror(error));
  }
  void check_usable(const char* call) const {
    if (committed) fail(std::string(call) + " after commit()");
    if (broken) fail(std::string(call) + " after an earlier error left the archive incomplete");
  }

  void write_fd(const uint8_t* data, size_t size) {
    while (size > 0) {
      const ssize_t done = ::write(fd, data, std::min(size, kMaxZlibChunk));
      if (done < 0 && errno == EINTR) continue;
      if (done < 0) fail_io("cannot write " + temp_path);
      data += done;
      size -= static_cast<size_t>(done);
    }
  }
  void flush() {
    write_fd(buffer.data(), buffer.size());
    buffer.clear();
  }
  void append(const uint8_t* data, size_t size) {
    // Large chunks (a batch of images) go straight to the file; small ones (headers, single rows) are gathered.
    if (buffer.size() + size > kReadChunk) flush();
    if (size >= kReadChunk) {
      write_fd(data, size);
    } else {
      buffer.insert(buffer.end(), data, data + size);
    }
    position += size;
  }
  void append(const std::vector<uint8_t>& bytes) { append(bytes.data(), bytes.size()); }

  // The CRC of the local header, known only after the data: patched in place (in the buffer when still there).
  void patch_crc(uint64_t local_offset, uint32_t crc) {
    std::vector<uint8_t> bytes;
    put32(bytes, crc);
    const uint64_t at = local_offset + 14;
    const uint64_t buffer_start = position - buffer.size();
    if (at >= buffer_start) {
      std::copy(bytes.begin(), bytes.end(), buffer.begin() + static_cast<std::ptrdiff_t>(at - buffer_start));
      return;
    }
    size_t done = 0;
    while (done < bytes.size()) {
      const ssize_t n = ::pwrite(fd, bytes.data() + done, bytes.size() - done, static_cast<off_t>(at + done));
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) fail_io("cannot write the CRC of '" + current_name + "' into " + temp_path);
      done += static_cast<size_t>(n);
    }
  }

  std::vector<uint8_t> local_header(const Written& entry) const {
    std::vector<uint8_t> out;
    put32(out, kLocalHeaderSignature);
    put16(out, entry.zip64 ? 45 : 20);  // version needed: 4.5 for ZIP64, 2.0 otherwise
    put16(out, entry.flags);
    put16(out, kMethodStored);
    put16(out, kDosTime);
    put16(out, kDosDate);
    put32(out, 0);  // CRC-32, patched by end()
    put32(out, entry.zip64 ? kSentinel32 : static_cast<uint32_t>(entry.size));
    put32(out, entry.zip64 ? kSentinel32 : static_cast<uint32_t>(entry.size));
    put16(out, static_cast<uint16_t>(entry.zip_name.size()));
    put16(out, entry.zip64 ? 20 : 0);
    out.insert(out.end(), entry.zip_name.begin(), entry.zip_name.end());
    if (entry.zip64) {
      put16(out, kZip64ExtraId);
      put16(out, 16);
      put64(out, entry.size);
      put64(out, entry.size);
    }
    return out;
  }

  std::vector<uint8_t> central_header(const Written& entry) const {
    std::vector<uint8_t> out;
    const uint16_t version = entry.zip64 ? 45 : 20;
    put32(out, kCentralHeaderSignature);
    put16(out, static_cast<uint16_t>((3 << 8) | version));  // made by: Unix
    put16(out, version);
    put16(out, entry.flags);
    put16(out, kMethodStored);
    put16(out, kDosTime);
    put16(out, kDosDate);
    put32(out, entry.crc);
    put32(out, entry.zip64 ? kSentinel32 : static_cast<uint32_t>(entry.size));
    put32(out, entry.zip64 ? kSentinel32 : static_cast<uint32_t>(entry.size));
    put16(out, static_cast<uint16_t>(entry.zip_name.size()));
    put16(out, entry.zip64 ? 28 : 0);
    put16(out, 0);                    // comment
    put16(out, 0);                    // disk
    put16(out, 0);                    // internal attributes
    put32(out, uint32_t{0100644} << 16);  // a regular file, rw-r--r--
    put32(out, entry.zip64 ? kSentinel32 : static_cast<uint32_t>(entry.local_offset));
    out.insert(out.end(), entry.zip_name.begin(), entry.zip_name.end());
    if (entry.zip64) {
      put16(out, kZip64ExtraId);
      put16(out, 24);
      put64(out, entry.size);
      put64(out, entry.size);
      put64(out, entry.local_offset);
    }
    return out;
  }
};

NpzWriter::NpzWriter(std::string path) : NpzWriter(std::move(path), kNpzZip64Limit) {}

NpzWriter::NpzWriter(std::string path, uint64_t zip64_limit) : impl_(std::make_unique<Impl>()) {
  impl_->path = std::move(path);
  impl_->zip64_limit = std::min(zip64_limit, kNpzZip64Limit);
  impl_->temp_path = impl_->path + ".tmp." + std::to_string(::getpid());
  impl_->fd = ::open(impl_->temp_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (impl_->fd < 0) impl_->fail_io("cannot create " + impl_->temp_path);
}

NpzWriter::~NpzWriter() {
  if (impl_->fd >= 0) ::close(impl_->fd);
  if (!impl_->committed) ::unlink(impl_->temp_path.c_str());
}

void NpzWriter::begin(const std::string& name, NpyDtype dtype, const std::vector<int64_t>& shape) {
  Impl& w = *impl_;
  w.check_usable("begin()");
  if (w.in_entry) w.fail("begin('" + name + "') before end() of '" + w.current_name + "'");
  if (name.empty()) w.fail("begin(): an array needs a name");
  if (name.find('\0') != std::string::npos) w.fail("begin(): the array name holds a NUL byte");
  if (name.size() > 0xFFFF - 4) w.fail("begin(): the array name is longer than a ZIP entry name can be");
  if (w.names.count(name) != 0) w.fail("begin('" + name + "'): an array of this name is already in the archive");
  uint64_t data_size = 0;
  if (!checked_bytes(shape, dtype, &data_size)) {
    w.fail("begin('" + name + "'): the shape " + shape_repr(shape) + " has a negative dimension or overflows");
  }
  const std::vector<uint8_t> header = npy_header(dtype, shape);
  if (header.size() > kMaxNpyHeaderBytes) {
    w.fail("begin('" + name + "'): the shape " + std::to_string(shape.size()) +
           " dimensions long makes a .npy header larger than read_npz accepts");
  }
  Impl::Written entry;
  entry.zip_name = name + ".npy";
  entry.flags = std::any_of(name.begin(), name.end(), [](char c) { return static_cast<unsigned char>(c) >= 0x80; })
                    ? kFlagUtf8Name
                    : 0;
  entry.size = header.size() + data_size;
  entry.local_offset = w.position;
  entry.zip64 = entry.size > w.zip64_limit || entry.local_offset > w.zip64_limit;
  w.names.insert(name);
  w.in_entry = true;
  w.current_name = name;
  w.remaining = data_size;
  w.append(w.local_header(entry));
  w.append(header);
  entry.crc = crc32_of(header.data(), header.size());
  w.current = entry;
}

void NpzWriter::write(const void* data, size_t bytes) {
  Impl& w = *impl_;
  w.check_usable("write()");
  if (!w.in_entry) w.fail("write() outside begin() ... end()");
  if (bytes > w.remaining) {
    w.broken = true;
    w.fail("write() of " + std::to_string(bytes) + " bytes to '" + w.current_name + "', which has only " +
           std::to_string(w.remaining) + " bytes left of its shape");
  }
  const auto* p = static_cast<const uint8_t*>(data);
  w.current.crc = crc32_of(p, bytes, w.current.crc);
  w.append(p, bytes);
  w.remaining -= bytes;
}

void NpzWriter::end() {
  Impl& w = *impl_;
  w.check_usable("end()");
  if (!w.in_entry) w.fail("end() without begin()");
  if (w.remaining != 0) {
    w.broken = true;
    w.fail("end() of '" + w.current_name + "' with " + std::to_string(w.remaining) +
           " bytes of its shape not written");
  }
  w.patch_crc(w.current.local_offset, w.current.crc);
  w.entries.push_back(w.current);
  w.in_entry = false;
}

void NpzWriter::commit() {
  Impl& w = *impl_;
  w.check_usable("commit()");
  if (w.in_entry) w.fail("commit() before end() of '" + w.current_name + "'");
  const uint64_t cd_offset = w.position;
  for (const Impl::Written& entry : w.entries) w.append(w.central_header(entry));
  const uint64_t cd_size = w.position - cd_offset;
  const uint64_t count = w.entries.size();
  const bool zip64 = count > kSentinel16 || cd_offset > w.zip64_limit || cd_size > w.zip64_limit;
  std::vector<uint8_t> end;
  if (zip64) {
    const uint64_t record_offset = w.position;
    put32(end, kZip64EndSignature);
    put64(end, kZip64EndSize - 12);
    put16(end, static_cast<uint16_t>((3 << 8) | 45));
    put16(end, 45);
    put32(end, 0);  // this disk
    put32(end, 0);  // the central directory's disk
    put64(end, count);
    put64(end, count);
    put64(end, cd_size);
    put64(end, cd_offset);
    put32(end, kZip64LocatorSignature);
    put32(end, 0);
    put64(end, record_offset);
    put32(end, 1);  // disks
  }
  const uint16_t count16 = count > kSentinel16 ? kSentinel16 : static_cast<uint16_t>(count);
  put32(end, kEndSignature);
  put16(end, 0);
  put16(end, 0);
  put16(end, count16);
  put16(end, count16);
  put32(end, cd_size > w.zip64_limit ? kSentinel32 : static_cast<uint32_t>(cd_size));
  put32(end, cd_offset > w.zip64_limit ? kSentinel32 : static_cast<uint32_t>(cd_offset));
  put16(end, 0);  // comment
  w.append(end);
  w.flush();
  if (::fsync(w.fd) != 0) w.fail_io("cannot fsync " + w.temp_path);
  const int fd = w.fd;
  w.fd = -1;
  if (::close(fd) != 0) w.fail_io("cannot close " + w.temp_path);
  if (::rename(w.temp_path.c_str(), w.path.c_str()) != 0) w.fail_io("cannot rename " + w.temp_path + " to it");
  w.committed = true;
  // The rename is durable once the directory is synced; a failure here leaves the complete file in place.
  const size_t slash = w.path.find_last_of('/');
  const std::string dir = slash == std::string::npos ? "." : (slash == 0 ? "/" : w.path.substr(0, slash));
  const int dir_fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir_fd >= 0) {
    const int rc = ::fsync(dir_fd);
    const int error = errno;
    ::close(dir_fd);
    if (rc != 0 && error != EINVAL) {
      errno = error;
      w.fail_io("cannot fsync the directory " + dir);
    }
  }
}

void write_npz(const std::string& path, const std::map<std::string, NpyArray>& arrays) {
  NpzWriter writer(path);
  for (const auto& [name, array] : arrays) {
    uint64_t expected = 0;
    if (!checked_bytes(array.shape, array.dtype, &expected)) {
      throw std::runtime_error(path + ": array '" + name + "': the shape " + shape_repr(array.shape) +
                               " has a negative dimension or overflows");
    }
    if (expected != array.bytes.size()) {
      throw std::runtime_error(path + ": array '" + name + "' holds " + std::to_string(array.bytes.size()) +
                               " bytes, its shape " + shape_repr(array.shape) + " of '" + npy_descr(array.dtype) +
                               "' needs " + std::to_string(expected));
    }
    writer.begin(name, array.dtype, array.shape);
    writer.write(array.bytes.data(), array.bytes.size());
    writer.end();
  }
  writer.commit();
}

}  // namespace ddpm
