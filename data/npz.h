// NumPy arrays in .npz archives, read and written without numpy: the files that guided-diffusion's evaluator and
// pytorch-fid exchange (samples `arr_0` uint8 N×H×W×C; Inception statistics `mu` float64 [D], `sigma` float64 [D, D]).
// An .npz is a ZIP archive of .npy files (format 1.0, 2.0 or 3.0 headers), stored or deflated, ZIP64 above 4 GiB.
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace ddpm {

// The largest size or offset a plain (not ZIP64) ZIP field holds.
constexpr uint64_t kNpzZip64Limit = 0xFFFFFFFFu;

enum class NpyDtype { kUint8, kFloat32, kFloat64 };  // descr "|u1", "<f4", "<f8"
size_t npy_item_size(NpyDtype dtype);
const char* npy_descr(NpyDtype dtype);

struct NpyArray {
  NpyDtype dtype = NpyDtype::kUint8;
  std::vector<int64_t> shape;
  std::vector<uint8_t> bytes;  // C order, little-endian
  int64_t elements() const;  // the product of shape (1 for a 0-d array); std::overflow_error past int64
};

// Every array of the archive, by entry name without ".npy" ("arr_0", "mu"). Each entry's CRC-32 is checked.
// Throws DataError naming the file, the entry and the byte offset of what is wrong (truncated, overlapping or
// out-of-file entries, a bad .npy header, a dtype other than the three above, Fortran order, a size that does not
// match the shape, a CRC mismatch).
std::map<std::string, NpyArray> read_npz(const std::string& path);
// The same on bytes in memory; `name` is used in messages (the fuzz target's entry point).
std::map<std::string, NpyArray> parse_npz(const std::vector<uint8_t>& bytes, const std::string& name);

// An array's dtype and shape, as its .npy header gives them.
struct NpyArrayInfo {
  NpyDtype dtype = NpyDtype::kUint8;
  std::vector<int64_t> shape;
  int64_t rows() const;        // shape[0] (0 for a 0-d array)
  uint64_t row_bytes() const;  // the bytes of one index of the first dimension
};

// An .npz whose arrays are read when asked: 50,000 evaluation images need not be in memory, once per rank.
// Opening checks all that read_npz checks, with the same messages (each entry's CRC-32 computed in passes of a
// buffer); a stored entry's data then stays in the file and is read with pread, as asked; a deflated entry
// (numpy.savez_compressed; it cannot be read from the middle) is inflated into memory at open.
class NpzFile {
 public:
  explicit NpzFile(const std::string& path);  // DataError as read_npz
  ~NpzFile();
  NpzFile(const NpzFile&) = delete;
  NpzFile& operator=(const NpzFile&) = delete;

  const std::string& path() const;
  std::vector<std::string> names() const;  // sorted, without ".npy"
  bool contains(const std::string& name) const;
  const NpyArrayInfo& info(const std::string& name) const;  // DataError naming the file for an absent name
  NpyArray read(const std::string& name) const;             // the whole array
  // Rows [first, first + count) of the first dimension, C order, into out (count * row_bytes() bytes).
  // std::out_of_range past the array or for a 0-d one; DataError when the file cannot be read (it shrank).
  void read_rows(const std::string& name, int64_t first, int64_t count, void* out) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Writes an .npz one array after the other, each in chunks (50,000 images need not be in memory at once).
// Entries are stored (not compressed), ZIP64 when an entry or the archive passes 4 GiB, as numpy.savez writes them.
// Nothing appears at `path` until commit() has written the central directory, flushed and renamed the temporary
// file; a writer destroyed without commit() removes its temporary file. Throws std::runtime_error naming the path
// (not DataError: a failed write is the disk's or the caller's problem, not bad input), also on misuse (write()
// past the shape's bytes, end() short of them, a duplicate name, begin() inside an array, commit() twice).
// The bytes are deterministic: the same arrays give the same file (a fixed 1980-01-01 timestamp, as numpy's).
class NpzWriter {
 public:
  explicit NpzWriter(std::string path);
  // Sizes and offsets above `zip64_limit` are written as ZIP64 fields; kNpzZip64Limit (0xFFFFFFFF) is the format's
  // own limit. A lower one is for tests: it exercises the ZIP64 records on small files.
  NpzWriter(std::string path, uint64_t zip64_limit);
  ~NpzWriter();
  NpzWriter(const NpzWriter&) = delete;
  NpzWriter& operator=(const NpzWriter&) = delete;

  void begin(const std::string& name, NpyDtype dtype, const std::vector<int64_t>& shape);
  void write(const void* data, size_t bytes);  // the current array's next bytes, in C order
  void end();                                  // checks that exactly the shape's bytes were written
  void commit();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// All of `arrays` at once, through NpzWriter.
void write_npz(const std::string& path, const std::map<std::string, NpyArray>& arrays);

}  // namespace ddpm
