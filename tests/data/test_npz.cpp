// .npz archives: round trips of the three dtypes, every kind of corrupt archive refused with a DataError naming the
// file and the entry, the writer's ZIP64 switch and its clean-up, and interop with real numpy both ways (numpy.load
// reads our files; we read numpy.savez and numpy.savez_compressed output, ZIP64 and data descriptors included).
// All test names contain "npz" (ctest -R npz).
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>

#include "data/data_error.h"
#include "data/npz.h"

namespace {

namespace fs = std::filesystem;
using Bytes = std::vector<uint8_t>;
using ddpm::DataError;
using ddpm::NpyArray;
using ddpm::NpyDtype;

class TempDir {
 public:
  TempDir() {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    path_ = fs::temp_directory_path() / ("ddpm_npz_" + std::string(info->test_suite_name()) + "_" + info->name() +
                                         "_" + std::to_string(::getpid()));
    fs::remove_all(path_);
    fs::create_directories(path_);
  }
  ~TempDir() { fs::remove_all(path_); }
  std::string str() const { return path_.string(); }
  std::string operator/(const std::string& name) const { return (path_ / name).string(); }
  std::vector<std::string> listing() const {
    std::vector<std::string> names;
    for (const auto& item : fs::directory_iterator(path_)) names.push_back(item.path().filename().string());
    return names;
  }

 private:
  fs::path path_;
};

Bytes read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return Bytes(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

void write_bytes(const std::string& path, const Bytes& bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
}

uint32_t le32(const Bytes& b, size_t at) {
  return b[at] | (b[at + 1] << 8) | (b[at + 2] << 16) | (static_cast<uint32_t>(b[at + 3]) << 24);
}
uint16_t le16(const Bytes& b, size_t at) { return static_cast<uint16_t>(b[at] | (b[at + 1] << 8)); }
void set32(Bytes& b, size_t at, uint32_t v) {
  for (int i = 0; i < 4; ++i) b[at + i] = static_cast<uint8_t>(v >> (8 * i));
}
void put16(Bytes& b, uint16_t v) {
  b.push_back(static_cast<uint8_t>(v));
  b.push_back(static_cast<uint8_t>(v >> 8));
}
void put32(Bytes& b, uint32_t v) {
  put16(b, static_cast<uint16_t>(v));
  put16(b, static_cast<uint16_t>(v >> 16));
}
uint32_t crc_of(const Bytes& b) { return static_cast<uint32_t>(crc32(0, b.data(), static_cast<uInt>(b.size()))); }

bool contains(const Bytes& haystack, const std::string& needle) {
  const Bytes bytes(needle.begin(), needle.end());  // as unsigned bytes: char is signed
  return std::search(haystack.begin(), haystack.end(), bytes.begin(), bytes.end()) != haystack.end();
}

// ---- Arrays with values both this file and the numpy scripts below compute (divisions and subtractions only, so
// that no compiler fuses them into an FMA and both sides round alike) ----------------------------------------------

NpyArray make_array(NpyDtype dtype, std::vector<int64_t> shape) {
  NpyArray array;
  array.dtype = dtype;
  array.shape = std::move(shape);
  const int64_t n = array.elements();
  array.bytes.resize(static_cast<size_t>(n) * ddpm::npy_item_size(dtype));
  for (int64_t i = 0; i < n; ++i) {
    if (dtype == NpyDtype::kUint8) {
      array.bytes[i] = static_cast<uint8_t>((i * 7 + 3) % 256);
    } else if (dtype == NpyDtype::kFloat32) {
      const float v = static_cast<float>(static_cast<double>(i) / 3.0 - 1.0);
      std::memcpy(&array.bytes[i * 4], &v, 4);
    } else {
      const double v = static_cast<double>(i % 11) / 7.0 - 0.5;
      std::memcpy(&array.bytes[i * 8], &v, 8);
    }
  }
  return array;
}

// The arrays of the interop tests: samples as the evaluator writes them, FID statistics, a 0-d and an empty array.
std::map<std::string, NpyArray> reference_arrays() {
  std::map<std::string, NpyArray> arrays;
  arrays["arr_0"] = make_array(NpyDtype::kUint8, {5, 4, 3, 3});
  arrays["mu"] = make_array(NpyDtype::kFloat64, {7});
  arrays["sigma"] = make_array(NpyDtype::kFloat64, {7, 7});
  arrays["scalar"] = make_array(NpyDtype::kFloat32, {});
  arrays["empty"] = make_array(NpyDtype::kFloat32, {0, 3});
  arrays["f32"] = make_array(NpyDtype::kFloat32, {4, 2});
  return arrays;
}

std::string describe(const NpyArray& a) {
  std::ostringstream out;
  out << ddpm::npy_descr(a.dtype) << " (";
  for (const int64_t d : a.shape) out << d << ",";
  out << ") " << a.bytes.size() << " bytes";
  return out.str();
}

void expect_same_arrays(const std::map<std::string, NpyArray>& want, const std::map<std::string, NpyArray>& got,
                        const std::string& what) {
  ASSERT_EQ(want.size(), got.size()) << what;
  for (const auto& [name, array] : want) {
    const auto it = got.find(name);
    ASSERT_NE(it, got.end()) << what << ": no array '" << name << "'";
    EXPECT_EQ(array.dtype, it->second.dtype) << what << ": " << name;
    EXPECT_EQ(array.shape, it->second.shape) << what << ": " << name;
    EXPECT_TRUE(array.bytes == it->second.bytes)
        << what << ": " << name << " differs: want " << describe(array) << ", got " << describe(it->second);
  }
}

// Writes in uneven chunks, as the sampler does, to exercise the writer's buffering.
void write_chunked(const std::string& path, const std::map<std::string, NpyArray>& arrays,
                   uint64_t zip64_limit = ddpm::kNpzZip64Limit) {
  ddpm::NpzWriter writer(path, zip64_limit);
  for (const auto& [name, array] : arrays) {
    writer.begin(name, array.dtype, array.shape);
    size_t done = 0, chunk = 1;
    while (done < array.bytes.size()) {
      const size_t n = std::min(chunk, array.bytes.size() - done);
      writer.write(array.bytes.data() + done, n);
      done += n;
      chunk = chunk * 3 + 1;
    }
    writer.end();
  }
  writer.commit();
}

// ---- A hand-made ZIP, to build the corrupt archives the writer cannot -------------------------------------------

// The bytes numpy writes for a header dict: the magic, version 1.0 and the dict padded to a multiple of 64.
Bytes npy_bytes(const std::string& dict, const Bytes& data) {
  std::string header = dict;
  const size_t unpadded = 10 + header.size() + 1;
  header.append(64 - unpadded % 64, ' ');
  header += '\n';
  Bytes out = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0};
  put16(out, static_cast<uint16_t>(header.size()));
  out.insert(out.end(), header.begin(), header.end());
  out.insert(out.end(), data.begin(), data.end());
  return out;
}

struct ZipEntry {
  ZipEntry(std::string name_, Bytes content_, bool deflate_ = false)
      : name(std::move(name_)), content(std::move(content_)), deflate(deflate_) {}
  std::string name;
  Bytes content;  // the uncompressed entry
  bool deflate = false;
  Bytes stored;             // filled by make_zip: what the archive holds (deflated or not)
  size_t local_offset = 0;  // filled by make_zip
  size_t central_offset = 0;
};

Bytes raw_deflate(const Bytes& raw) {
  z_stream z{};
  EXPECT_EQ(deflateInit2(&z, 9, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY), Z_OK);
  Bytes out(deflateBound(&z, raw.size()) + 16);
  z.next_in = const_cast<Bytef*>(raw.data());
  z.avail_in = static_cast<uInt>(raw.size());
  z.next_out = out.data();
  z.avail_out = static_cast<uInt>(out.size());
  EXPECT_EQ(deflate(&z, Z_FINISH), Z_STREAM_END);
  out.resize(z.total_out);
  deflateEnd(&z);
  return out;
}

Bytes make_zip(std::vector<ZipEntry>& entries) {
  Bytes zip;
  for (ZipEntry& e : entries) {
    e.stored = e.deflate ? raw_deflate(e.content) : e.content;
    e.local_offset = zip.size();
    put32(zip, 0x04034b50);
    put16(zip, 20);
    put16(zip, 0);
    put16(zip, e.deflate ? 8 : 0);
    put16(zip, 0);
    put16(zip, 0x21);
    put32(zip, crc_of(e.content));
    put32(zip, static_cast<uint32_t>(e.stored.size()));
    put32(zip, static_cast<uint32_t>(e.content.size()));
    put16(zip, static_cast<uint16_t>(e.name.size()));
    put16(zip, 0);
    zip.insert(zip.end(), e.name.begin(), e.name.end());
    zip.insert(zip.end(), e.stored.begin(), e.stored.end());
  }
  const size_t cd_offset = zip.size();
  for (ZipEntry& e : entries) {
    e.central_offset = zip.size();
    put32(zip, 0x02014b50);
    put16(zip, 20);
    put16(zip, 20);
    put16(zip, 0);
    put16(zip, e.deflate ? 8 : 0);
    put16(zip, 0);
    put16(zip, 0x21);
    put32(zip, crc_of(e.content));
    put32(zip, static_cast<uint32_t>(e.stored.size()));
    put32(zip, static_cast<uint32_t>(e.content.size()));
    put16(zip, static_cast<uint16_t>(e.name.size()));
    put16(zip, 0);
    put16(zip, 0);
    put16(zip, 0);
    put16(zip, 0);
    put32(zip, 0);
    put32(zip, static_cast<uint32_t>(e.local_offset));
    zip.insert(zip.end(), e.name.begin(), e.name.end());
  }
  const size_t cd_size = zip.size() - cd_offset;
  put32(zip, 0x06054b50);
  put16(zip, 0);
  put16(zip, 0);
  put16(zip, static_cast<uint16_t>(entries.size()));
  put16(zip, static_cast<uint16_t>(entries.size()));
  put32(zip, static_cast<uint32_t>(cd_size));
  put32(zip, static_cast<uint32_t>(cd_offset));
  put16(zip, 0);
  return zip;
}

Bytes u8_data(size_t n) {
  Bytes data(n);
  for (size_t i = 0; i < n; ++i) data[i] = static_cast<uint8_t>(i * 5 + 1);
  return data;
}

const std::string kGoodDict = "{'descr': '|u1', 'fortran_order': False, 'shape': (2, 3), }";

// The DataError of reading `path`; fails the test when there is none. Opening it as an NpzFile (which does not
// hold the data) must refuse it with the very same message.
std::string read_error(const std::string& path) {
  std::string message;
  try {
    ddpm::read_npz(path);
    ADD_FAILURE() << path << " was accepted";
  } catch (const DataError& e) {
    message = e.what();
  }
  try {
    const ddpm::NpzFile file(path);
    ADD_FAILURE() << path << " was accepted by NpzFile";
  } catch (const DataError& e) {
    EXPECT_EQ(std::string(e.what()), message) << "NpzFile and read_npz disagree";
  }
  return message;
}

// Every array of `path` through NpzFile: whole, and row by row in uneven runs, equal to read_npz's.
void expect_npz_file_reads(const std::string& path) {
  const std::map<std::string, NpyArray> expected = ddpm::read_npz(path);
  const ddpm::NpzFile file(path);
  std::vector<std::string> names;
  for (const auto& [name, array] : expected) names.push_back(name);
  ASSERT_EQ(file.names(), names);
  for (const auto& [name, array] : expected) {
    SCOPED_TRACE(name);
    EXPECT_TRUE(file.contains(name));
    EXPECT_EQ(file.info(name).dtype, array.dtype);
    EXPECT_EQ(file.info(name).shape, array.shape);
    const NpyArray whole = file.read(name);
    EXPECT_EQ(whole.bytes, array.bytes);
    if (array.shape.empty()) {
      std::vector<uint8_t> none(16);
      EXPECT_THROW(file.read_rows(name, 0, 1, none.data()), std::out_of_range);
      continue;
    }
    const int64_t rows = file.info(name).rows();
    const auto row = static_cast<size_t>(file.info(name).row_bytes());
    std::vector<uint8_t> joined;
    for (int64_t first = 0, run = 1; first < rows; first += run, run = run % 3 + 1) {
      const int64_t count = std::min(run, rows - first);
      std::vector<uint8_t> part(row * static_cast<size_t>(count));
      file.read_rows(name, first, count, part.data());
      joined.insert(joined.end(), part.begin(), part.end());
    }
    EXPECT_EQ(joined, array.bytes);
    std::vector<uint8_t> spare(row + 1);
    EXPECT_THROW(file.read_rows(name, rows, 1, spare.data()), std::out_of_range);
    EXPECT_THROW(file.read_rows(name, -1, 1, spare.data()), std::out_of_range);
    file.read_rows(name, rows, 0, spare.data());  // an empty run at the end is fine
  }
  EXPECT_FALSE(file.contains("absent"));
  EXPECT_THROW(file.info("absent"), DataError);
}

void expect_refused(const std::string& path, const std::string& entry, const std::string& fragment) {
  const std::string message = read_error(path);
  EXPECT_NE(message.find(path), std::string::npos) << "the message does not name the file: " << message;
  if (!entry.empty()) {
    EXPECT_NE(message.find("entry '" + entry + "'"), std::string::npos)
        << "the message does not name the entry " << entry << ": " << message;
  }
  EXPECT_NE(message.find(fragment), std::string::npos) << "expected '" << fragment << "' in: " << message;
  EXPECT_NE(message.find("offset"), std::string::npos) << "the message names no offset: " << message;
}

// ---- Round trips -------------------------------------------------------------------------------------------------

TEST(npz, RoundTripsAllThreeDtypesIncludingZeroDimAndEmptyArrays) {
  TempDir dir;
  std::map<std::string, NpyArray> arrays = reference_arrays();
  arrays["empty_u8"] = make_array(NpyDtype::kUint8, {0});
  arrays["big_u8"] = make_array(NpyDtype::kUint8, {3, 1000, 1000});  // past the writer's 1 MiB buffer
  const std::string path = dir / "a.npz";
  write_chunked(path, arrays);
  expect_same_arrays(arrays, ddpm::read_npz(path), "read_npz");
  expect_same_arrays(arrays, ddpm::parse_npz(read_bytes(path), path), "parse_npz");
  expect_npz_file_reads(path);
  EXPECT_EQ(dir.listing(), std::vector<std::string>{"a.npz"}) << "the temporary file is left behind";

  const std::string again = dir / "b.npz";
  ddpm::write_npz(again, arrays);
  EXPECT_EQ(read_bytes(path), read_bytes(again)) << "the same arrays must give the same bytes";
}

TEST(npz, WritesNumpysHeaderLayoutWithDataAlignedTo64) {
  TempDir dir;
  const std::string path = dir / "a.npz";
  std::map<std::string, NpyArray> arrays;
  arrays["arr_0"] = make_array(NpyDtype::kUint8, {2, 3});
  ddpm::write_npz(path, arrays);
  const Bytes file = read_bytes(path);
  // The local header (30 bytes + "arr_0.npy"), then numpy's .npy header: the dict, room for shape[0] to grow to
  // 21 digits, spaces up to a multiple of 64 with the newline (128 bytes here).
  const size_t npy = 30 + 9;
  std::string expected = kGoodDict + std::string(21 - 1, ' ');
  expected.append(128 - 10 - expected.size() - 1, ' ');
  expected += '\n';
  ASSERT_EQ(file.size() > npy + 128 + 6, true);
  EXPECT_EQ(std::string(file.begin() + npy, file.begin() + npy + 8), std::string("\x93NUMPY\x01\x00", 8));
  EXPECT_EQ(le16(file, npy + 8), 128 - 10);
  EXPECT_EQ(std::string(file.begin() + npy + 10, file.begin() + npy + 128), expected);
  EXPECT_EQ(std::vector<uint8_t>(file.begin() + npy + 128, file.begin() + npy + 134), arrays["arr_0"].bytes);
}

TEST(npz, WritesFormat2WhenTheHeaderDoesNotFitSixteenBits) {
  TempDir dir;
  const std::string path = dir / "a.npz";
  std::map<std::string, NpyArray> arrays;
  std::vector<int64_t> shape(23000, 1);  // "1, " x 23000: a header over 65535 bytes
  shape[5] = 2;
  arrays["wide"] = make_array(NpyDtype::kFloat64, shape);
  ddpm::write_npz(path, arrays);
  const Bytes file = read_bytes(path);
  EXPECT_EQ(file[30 + 8 + 6], 2) << "version 2.0";
  const uint32_t header_size = le32(file, 30 + 8 + 8);
  EXPECT_GT(header_size, 0xFFFFu);
  EXPECT_EQ((12 + header_size) % 64, 0u);
  expect_same_arrays(arrays, ddpm::read_npz(path), "read_npz");
}

TEST(npz, WriterSwitchesToZip64AboveTheLimit) {
  TempDir dir;
  const std::map<std::string, NpyArray> arrays = reference_arrays();
  const std::string plain = dir / "plain.npz";
  write_chunked(plain, arrays);
  const Bytes plain_bytes = read_bytes(plain);
  EXPECT_FALSE(contains(plain_bytes, "PK\x06\x06")) << "no ZIP64 record below 4 GiB";
  EXPECT_FALSE(contains(plain_bytes, "PK\x06\x07"));

  // A limit of 400 bytes: the first two entries (arr_0 of 308 bytes, empty of 128) are plain, the later ones
  // (offsets past 400) and the central directory ZIP64.
  const std::string mixed = dir / "mixed.npz";
  write_chunked(mixed, arrays, 400);
  const Bytes bytes = read_bytes(mixed);
  EXPECT_TRUE(contains(bytes, "PK\x06\x06")) << "the ZIP64 end-of-central-directory record";
  EXPECT_TRUE(contains(bytes, "PK\x06\x07")) << "the ZIP64 locator";
  EXPECT_EQ(le16(bytes, 4), 20) << "the first entry (offset 0, under 400 bytes) is plain";
  EXPECT_TRUE(contains(bytes, std::string("PK\x03\x04\x2d\x00", 6))) << "a later local header needs version 4.5";
  const size_t end = bytes.size() - 22;
  EXPECT_EQ(le32(bytes, end + 12), 0xFFFFFFFFu) << "the central directory size is in the ZIP64 record";
  EXPECT_EQ(le32(bytes, end + 16), 0xFFFFFFFFu) << "the central directory offset is in the ZIP64 record";
  expect_same_arrays(arrays, ddpm::read_npz(mixed), "ZIP64 at 400 bytes");

  // A limit of 0: every entry ZIP64, in both headers.
  const std::string all = dir / "all.npz";
  write_chunked(all, arrays, 0);
  const Bytes all_bytes = read_bytes(all);
  EXPECT_EQ(le16(all_bytes, 4), 45) << "version needed 4.5";
  EXPECT_EQ(le32(all_bytes, 18), 0xFFFFFFFFu) << "the local sizes are in the ZIP64 extra field";
  EXPECT_EQ(le16(all_bytes, 28), 20) << "the local ZIP64 extra field";
  expect_same_arrays(arrays, ddpm::read_npz(all), "ZIP64 everywhere");
  expect_npz_file_reads(all);
}

TEST(npz, ReadsDeflatedEntries) {
  TempDir dir;
  std::vector<ZipEntry> entries = {{"a.npy", npy_bytes(kGoodDict, u8_data(6)), true},
                                   {"big.npy",
                                    npy_bytes("{'descr': '|u1', 'fortran_order': False, 'shape': (3000000,), }",
                                              Bytes(3000000, 7)),
                                    true}};
  const std::string path = dir / "d.npz";
  write_bytes(path, make_zip(entries));
  const auto arrays = ddpm::read_npz(path);
  ASSERT_EQ(arrays.size(), 2u);
  EXPECT_EQ(arrays.at("a").bytes, u8_data(6));
  EXPECT_EQ(arrays.at("big").shape, std::vector<int64_t>{3000000});
  EXPECT_EQ(arrays.at("big").bytes, Bytes(3000000, 7));
  expect_npz_file_reads(path);
  // A stored and a deflated entry in one archive.
  std::vector<ZipEntry> mixed = {{"arr_0.npy", npy_bytes(kGoodDict, u8_data(6)), false},
                                 {"b.npy", npy_bytes(kGoodDict, u8_data(6)), true}};
  const std::string mixed_path = dir / "m.npz";
  write_bytes(mixed_path, make_zip(mixed));
  expect_npz_file_reads(mixed_path);
}

// A stored array stays in the file: rows are read when asked, so a file cut short after opening is an error
// naming the file and the offset, not bytes from nowhere.
TEST(npz, NpzFileReadsStoredRowsFromTheFile) {
  TempDir dir;
  const std::string path = dir / "images.npz";
  std::map<std::string, NpyArray> arrays;
  arrays["arr_0"] = make_array(NpyDtype::kUint8, {100, 8, 8, 3});
  ddpm::write_npz(path, arrays);
  const ddpm::NpzFile file(path);
  std::vector<uint8_t> row(8 * 8 * 3);
  file.read_rows("arr_0", 99, 1, row.data());
  EXPECT_TRUE(std::equal(row.begin(), row.end(), arrays["arr_0"].bytes.end() - static_cast<std::ptrdiff_t>(row.size())));
  std::filesystem::resize_file(path, std::filesystem::file_size(path) / 2);
  try {
    file.read_rows("arr_0", 99, 1, row.data());
    ADD_FAILURE() << "a row past the cut was read";
  } catch (const DataError& e) {
    const std::string message = e.what();
    EXPECT_NE(message.find(path), std::string::npos) << message;
    EXPECT_NE(message.find("the file ended early"), std::string::npos) << message;
  }
  file.read_rows("arr_0", 0, 1, row.data());  // the part still there reads
  EXPECT_TRUE(std::equal(row.begin(), row.end(), arrays["arr_0"].bytes.begin()));
}

// ---- Corrupt archives --------------------------------------------------------------------------------------------

TEST(npz, TruncatedFileIsRefused) {
  TempDir dir;
  const std::string good = dir / "good.npz";
  ddpm::write_npz(good, reference_arrays());
  const Bytes bytes = read_bytes(good);
  for (const size_t keep : {size_t{0}, size_t{10}, bytes.size() / 2, bytes.size() - 1}) {
    const std::string path = dir / ("cut" + std::to_string(keep) + ".npz");
    write_bytes(path, Bytes(bytes.begin(), bytes.begin() + static_cast<std::ptrdiff_t>(keep)));
    // The end-of-central-directory record is gone with the tail: no entry can be named.
    expect_refused(path, "", keep < 22 ? "not a ZIP archive" : "no end-of-central-directory record");
  }
}

TEST(npz, TruncatedEntryDataIsRefused) {
  TempDir dir;
  std::vector<ZipEntry> entries = {{"a.npy", npy_bytes(kGoodDict, u8_data(6))}};
  Bytes zip = make_zip(entries);
  // The central directory claims 1000 bytes of data for a 70-byte entry: it runs into the central directory.
  set32(zip, entries[0].central_offset + 20, 1000);
  set32(zip, entries[0].central_offset + 24, 1000);
  set32(zip, entries[0].local_offset + 18, 1000);
  set32(zip, entries[0].local_offset + 22, 1000);
  const std::string path = dir / "t.npz";
  write_bytes(path, zip);
  expect_refused(path, "a.npy", "bytes of data run past the end of the file");
}

TEST(npz, BadCrcIsRefused) {
  TempDir dir;
  const std::string path = dir / "a.npz";
  ddpm::write_npz(path, reference_arrays());
  Bytes bytes = read_bytes(path);
  // The first entry ("arr_0", the map's first) starts at 0: its pixels follow the 39-byte local header and the
  // .npy header.
  const size_t pixels = 30 + 9 + 10 + le16(bytes, 30 + 9 + 8);
  bytes[pixels + 10] ^= 0x40;
  write_bytes(path, bytes);
  expect_refused(path, "arr_0.npy", "CRC-32 mismatch");
}

TEST(npz, EntryOffsetPastTheEndIsRefused) {
  TempDir dir;
  std::vector<ZipEntry> entries = {{"a.npy", npy_bytes(kGoodDict, u8_data(6))}};
  Bytes zip = make_zip(entries);
  set32(zip, entries[0].central_offset + 42, 1000000);
  const std::string path = dir / "p.npz";
  write_bytes(path, zip);
  expect_refused(path, "a.npy", "lies past the end of the file");
}

TEST(npz, OverlappingEntriesAreRefused) {
  TempDir dir;
  std::vector<ZipEntry> entries = {{"a.npy", npy_bytes(kGoodDict, u8_data(6))},
                                   {"b.npy", npy_bytes(kGoodDict, u8_data(6))}};
  Bytes zip = make_zip(entries);
  // a.npy claims its data runs 20 bytes into b.npy's local header; both of its headers agree.
  const uint32_t longer = static_cast<uint32_t>(entries[0].content.size() + 20);
  for (const size_t at : {entries[0].local_offset + 18, entries[0].local_offset + 22,
                          entries[0].central_offset + 20, entries[0].central_offset + 24}) {
    set32(zip, at, longer);
  }
  const std::string path = dir / "o.npz";
  write_bytes(path, zip);
  expect_refused(path, "b.npy", "overlaps entry 'a.npy'");

  // Two central records of one local header: the second name is not the local header's.
  std::vector<ZipEntry> same = {{"a.npy", npy_bytes(kGoodDict, u8_data(6))},
                                {"c.npy", npy_bytes(kGoodDict, u8_data(6))}};
  Bytes twice = make_zip(same);
  set32(twice, same[1].central_offset + 42, 0);
  const std::string path2 = dir / "o2.npz";
  write_bytes(path2, twice);
  expect_refused(path2, "c.npy", "overlaps entry 'a.npy'");
}

TEST(npz, DuplicateNamesAreRefused) {
  TempDir dir;
  std::vector<ZipEntry> entries = {{"a.npy", npy_bytes(kGoodDict, u8_data(6))},
                                   {"a.npy", npy_bytes(kGoodDict, u8_data(6))}};
  const std::string path = dir / "dup.npz";
  write_bytes(path, make_zip(entries));
  expect_refused(path, "a.npy", "a second entry of this name");
}

TEST(npz, BadNpyHeadersAreRefused) {
  struct Case {
    std::string content_name;
    Bytes content;
    std::string fragment;
  };
  Bytes bad_magic = npy_bytes(kGoodDict, u8_data(6));
  bad_magic[5] = 'X';
  Bytes bad_version = npy_bytes(kGoodDict, u8_data(6));
  bad_version[6] = 4;
  const std::vector<Case> cases = {
      {"bad magic", bad_magic, "no \\x93NUMPY magic"},
      {"version 4.0", bad_version, "format version 4.0 is not supported"},
      {"fortran order", npy_bytes("{'descr': '|u1', 'fortran_order': True, 'shape': (2, 3), }", u8_data(6)),
       "fortran_order True is not supported"},
      {"<i8", npy_bytes("{'descr': '<i8', 'fortran_order': False, 'shape': (2, 3), }", Bytes(48)),
       "dtype '<i8' is not supported"},
      {">f8", npy_bytes("{'descr': '>f8', 'fortran_order': False, 'shape': (2,), }", Bytes(16)),
       "dtype '>f8' is not supported"},
      {"short data", npy_bytes(kGoodDict, u8_data(5)), "needs 6 bytes of data, the entry holds 5"},
      {"long data", npy_bytes(kGoodDict, u8_data(7)), "needs 6 bytes of data, the entry holds 7"},
      {"(n) is no tuple", npy_bytes("{'descr': '|u1', 'fortran_order': False, 'shape': (6), }", u8_data(6)),
       "is an int, not a tuple"},
      {"negative dim", npy_bytes("{'descr': '|u1', 'fortran_order': False, 'shape': (-6,), }", u8_data(6)),
       "expected a dimension"},
      {"overflow", npy_bytes("{'descr': '<f8', 'fortran_order': False, 'shape': (4294967296, 4294967296), }", {}),
       "overflows 64 bits"},
      {"structured", npy_bytes("{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (1,), }", Bytes(4)),
       "descr is not a string"},
      {"missing key", npy_bytes("{'descr': '|u1', 'shape': (2, 3), }", u8_data(6)), "no 'fortran_order'"},
      {"extra key", npy_bytes("{'descr': '|u1', 'fortran_order': False, 'shape': (2, 3), 'x': 1, }", u8_data(6)),
       "unexpected key 'x'"},
      {"junk after dict", npy_bytes(kGoodDict + " x", u8_data(6)), "does not end in spaces and a newline"},
      {"header past the entry", Bytes{0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, 0xff, 0x7f, '{'},
       "truncated .npy header"},
  };
  TempDir dir;
  for (const Case& c : cases) {
    for (const bool deflate : {false, true}) {
      SCOPED_TRACE(c.content_name + (deflate ? " (deflated)" : " (stored)"));
      std::vector<ZipEntry> entries = {{"x.npy", c.content, deflate}};
      const std::string path = dir / "h.npz";
      write_bytes(path, make_zip(entries));
      expect_refused(path, "x.npy", c.fragment);
    }
  }
}

TEST(npz, BadZipStructureIsRefused) {
  TempDir dir;
  const auto refused = [&](const std::string& label, std::vector<ZipEntry> entries, auto patch,
                           const std::string& entry, const std::string& fragment) {
    SCOPED_TRACE(label);
    Bytes zip = make_zip(entries);
    patch(zip, entries);
    const std::string path = dir / "z.npz";
    write_bytes(path, zip);
    expect_refused(path, entry, fragment);
  };
  const Bytes good = npy_bytes(kGoodDict, u8_data(6));
  refused("not .npy", {{"a.txt", good}}, [](Bytes&, auto&) {}, "a.txt", "not a .npy file");
  refused("method 12", {{"a.npy", good}}, [](Bytes& z, auto& e) {
    z[e[0].local_offset + 8] = 12;
    z[e[0].central_offset + 10] = 12;
  }, "a.npy", "compression method 12 is not supported");
  refused("encrypted", {{"a.npy", good}}, [](Bytes& z, auto& e) { z[e[0].central_offset + 8] = 1; }, "a.npy",
          "encrypted");
  refused("local name", {{"a.npy", good}}, [](Bytes& z, auto& e) { z[e[0].local_offset + 30] = 'b'; }, "a.npy",
          "the local header names 'b.npy'");
  refused("local CRC", {{"a.npy", good}}, [](Bytes& z, auto& e) { z[e[0].local_offset + 14] ^= 1; }, "a.npy",
          "disagrees with the central directory");
  refused("central CRC", {{"a.npy", good}}, [](Bytes& z, auto& e) {
    z[e[0].local_offset + 14] ^= 1;
    z[e[0].central_offset + 16] ^= 1;
  }, "a.npy", "CRC-32 mismatch");
  refused("stored sizes", {{"a.npy", good}}, [](Bytes& z, auto& e) { set32(z, e[0].central_offset + 24, 5); },
          "a.npy", "a stored entry whose compressed size");
  refused("deflate ratio", {{"a.npy", good, true}}, [](Bytes& z, auto& e) {
    set32(z, e[0].central_offset + 24, 2000000000);
  }, "a.npy", "more than deflate's largest ratio");
  refused("deflate longer", {{"a.npy", good, true}}, [](Bytes& z, auto& e) {
    set32(z, e[0].central_offset + 24, static_cast<uint32_t>(e[0].content.size() + 1));
    set32(z, e[0].local_offset + 22, static_cast<uint32_t>(e[0].content.size() + 1));
  }, "a.npy", "inflates to " + std::to_string(good.size()) + " bytes, the central directory declares");
  refused("deflate shorter", {{"a.npy", good, true}}, [](Bytes& z, auto& e) {
    set32(z, e[0].central_offset + 24, static_cast<uint32_t>(e[0].content.size() - 1));
    set32(z, e[0].local_offset + 22, static_cast<uint32_t>(e[0].content.size() - 1));
  }, "a.npy", "inflates to more than the " + std::to_string(good.size() - 1) + " bytes");
  refused("corrupt deflate", {{"a.npy", good, true}}, [](Bytes& z, auto& e) {
    z[e[0].local_offset + 30 + 5] = 0xff;  // the first block header: an invalid block type
  }, "a.npy", "deflate");
  refused("entry count", {{"a.npy", good}}, [](Bytes& z, auto&) {
    z[z.size() - 22 + 8] = 2;
    z[z.size() - 22 + 10] = 2;
  }, "", "entries, more than its central directory");
  refused("central directory offset", {{"a.npy", good}}, [](Bytes& z, auto&) { z[z.size() - 22 + 16] += 1; }, "",
          "does not end where the end-of-central-directory records start");
  refused("split archive", {{"a.npy", good}}, [](Bytes& z, auto&) { z[z.size() - 22 + 4] = 1; }, "",
          "multi-disk");
}

// ---- The writer --------------------------------------------------------------------------------------------------

TEST(npz, WriterWithoutCommitLeavesNothing) {
  TempDir dir;
  const std::string path = dir / "out.npz";
  {
    ddpm::NpzWriter writer(path);
    writer.begin("arr_0", NpyDtype::kUint8, {2, 3});
    writer.write(u8_data(6).data(), 6);
    writer.end();
    EXPECT_FALSE(fs::exists(path)) << "nothing at the path before commit()";
    EXPECT_EQ(dir.listing().size(), 1u) << "the temporary file";
  }
  EXPECT_TRUE(dir.listing().empty()) << "a writer destroyed without commit() leaves its temporary file";

  {  // Also after a failure mid-array.
    ddpm::NpzWriter writer(path);
    writer.begin("arr_0", NpyDtype::kUint8, {2, 3});
    EXPECT_THROW(writer.write(u8_data(7).data(), 7), std::runtime_error);
    EXPECT_THROW(writer.commit(), std::runtime_error);
  }
  EXPECT_TRUE(dir.listing().empty());

  // A committed file replaces an older one whole.
  write_bytes(path, Bytes(100, 1));
  ddpm::write_npz(path, reference_arrays());
  expect_same_arrays(reference_arrays(), ddpm::read_npz(path), "replaced");
  EXPECT_EQ(dir.listing(), std::vector<std::string>{"out.npz"});
}

TEST(npz, WriterMisuseNamesThePath) {
  TempDir dir;
  const std::string path = dir / "out.npz";
  const auto message_of = [](auto call) -> std::string {
    try {
      call();
    } catch (const std::runtime_error& e) {
      return e.what();
    }
    return "(no error)";
  };
  {
    ddpm::NpzWriter writer(path);
    writer.begin("a", NpyDtype::kFloat32, {2});
    const std::string nested = message_of([&] { writer.begin("b", NpyDtype::kFloat32, {2}); });
    EXPECT_NE(nested.find(path), std::string::npos) << nested;
    EXPECT_NE(nested.find("before end() of 'a'"), std::string::npos) << nested;
    const std::string early = message_of([&] { writer.end(); });
    EXPECT_NE(early.find("8 bytes of its shape not written"), std::string::npos) << early;
  }
  {
    ddpm::NpzWriter writer(path);
    writer.begin("a", NpyDtype::kFloat32, {});
    const float v = 1;
    writer.write(&v, 4);
    writer.end();
    const std::string dup = message_of([&] { writer.begin("a", NpyDtype::kUint8, {1}); });
    EXPECT_NE(dup.find("already in the archive"), std::string::npos) << dup;
    const std::string negative = message_of([&] { writer.begin("b", NpyDtype::kUint8, {-1}); });
    EXPECT_NE(negative.find("negative dimension"), std::string::npos) << negative;
    writer.commit();  // the refused begin() calls wrote nothing: the archive is still good
    const std::string twice = message_of([&] { writer.commit(); });
    EXPECT_NE(twice.find("after commit()"), std::string::npos) << twice;
  }
  EXPECT_EQ(ddpm::read_npz(path).size(), 1u);
  const std::string missing_dir = message_of([&] { ddpm::NpzWriter writer(dir / "no/such/dir.npz"); });
  EXPECT_NE(missing_dir.find(dir / "no/such/dir.npz"), std::string::npos) << missing_dir;
}

// ---- numpy -------------------------------------------------------------------------------------------------------

// setup.sh's virtual environment (launch/env.sh): the python that has numpy.
std::string numpy_python() {
  if (const char* env = std::getenv("DDPM_TORCH_ENV"); env != nullptr && *env != '\0') {
    return std::string(env) + "/bin/python";
  }
  const char* cache = std::getenv("XDG_CACHE_HOME");
  const char* home = std::getenv("HOME");
  const std::string base = cache != nullptr && *cache != '\0' ? cache : std::string(home ? home : "") + "/.cache";
  const char* version = std::getenv("DDPM_TORCH_VERSION");
  return base + "/ddpm/torch-" + (version != nullptr && *version != '\0' ? version : "2.11.0") + "/bin/python";
}

std::string shell_quote(const std::string& text) {
  std::string out = "'";
  for (const char c : text) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

// Runs `script` (written to dir) with the arguments; returns the exit status, the output in *output.
int run_python(const TempDir& dir, const std::string& script, const std::vector<std::string>& args,
               std::string* output) {
  const std::string script_path = dir / "check.py", log = dir / "python.log";
  std::ofstream(script_path) << script;
  std::string command = shell_quote(numpy_python()) + " " + shell_quote(script_path);
  for (const std::string& arg : args) command += " " + shell_quote(arg);
  command += " >" + shell_quote(log) + " 2>&1";
  const int status = std::system(command.c_str());
  const Bytes text = read_bytes(log);
  output->assign(text.begin(), text.end());
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + (WIFSIGNALED(status) ? WTERMSIG(status) : 0);
}

// The expected arrays in numpy, computed as make_array does, and the verdicts: exit 1 with "MISMATCH: ..." when a
// result differs (the test fails: that is what it checks), any other status a harness error (reported as such).
const char* const kPythonCommon = R"PY(
import io, os, sys, traceback, zipfile
import numpy as np

def make(dtype, shape):
    n = int(np.prod(shape, dtype=np.int64))
    if dtype == np.uint8:
        return ((np.arange(n, dtype=np.int64) * 7 + 3) % 256).astype(np.uint8).reshape(shape)
    if dtype == np.float32:
        return np.array([i / 3.0 - 1.0 for i in range(n)], dtype=np.float64).astype(np.float32).reshape(shape)
    return np.array([(i % 11) / 7.0 - 0.5 for i in range(n)], dtype=np.float64).reshape(shape)

REFERENCE = {
    "arr_0": make(np.uint8, (5, 4, 3, 3)),
    "mu": make(np.float64, (7,)),
    "sigma": make(np.float64, (7, 7)),
    "scalar": make(np.float32, ()),
    "empty": make(np.float32, (0, 3)),
    "f32": make(np.float32, (4, 2)),
}

def harness_error(message):
    print("HARNESS ERROR: " + message)
    sys.exit(2)

def run(main):
    try:
        main()
    except SystemExit:
        raise
    except BaseException:
        harness_error("the check script failed: " + traceback.format_exc())
)PY";

const char* const kNumpyReadsOurs = R"PY(
def main():
    problems = []
    for path in sys.argv[1:]:
        try:
            with np.load(path, allow_pickle=False) as f:
                got = {k: f[k] for k in f.files}
            with zipfile.ZipFile(path) as zf:
                bad = zf.testzip()
                members = {name: zf.read(name) for name in zf.namelist()}
        except Exception as e:
            problems.append("%s: numpy cannot read it: %r" % (path, e))
            continue
        if bad is not None:
            problems.append("%s: zipfile finds a bad CRC in %s" % (path, bad))
        if sorted(got) != sorted(REFERENCE):
            problems.append("%s: arrays %s, expected %s" % (path, sorted(got), sorted(REFERENCE)))
        for name, want in REFERENCE.items():
            if name not in got:
                continue
            have = got[name]
            if have.dtype != want.dtype or have.shape != want.shape:
                problems.append("%s: %s is %s %s, expected %s %s" % (path, name, have.dtype, have.shape,
                                                                      want.dtype, want.shape))
            elif have.tobytes() != want.tobytes():
                problems.append("%s: %s has other values" % (path, name))
            saved = io.BytesIO()
            np.save(saved, want)
            if members.get(name + ".npy") != saved.getvalue():
                problems.append("%s: %s.npy is not the bytes np.save writes" % (path, name))
    if problems:
        print("MISMATCH: " + "\n  ".join(problems))
        sys.exit(1)
    print("numpy reads %d files" % (len(sys.argv) - 1))

run(main)
)PY";

// Writes the files the C++ side reads: savez, savez_compressed, streamed to a pipe-like sink (data descriptors),
// with every ZIP64 record (zipfile's limit lowered), with explicit format versions 2.0 and 3.0 (stored and
// deflated), and a large random array (inflated over several input chunks) with its raw bytes beside it.
const char* const kNumpyWrites = R"PY(
class Sink:  # no seek or tell: zipfile writes data descriptors (read only makes numpy take it for a file)
    def __init__(self, f):
        self.f = f
    def read(self, n=-1):
        raise io.UnsupportedOperation("write-only")
    def write(self, b):
        return self.f.write(b)
    def flush(self):
        self.f.flush()

def main():
    out = sys.argv[1]
    np.savez(os.path.join(out, "savez.npz"), REFERENCE["arr_0"], **{k: v for k, v in REFERENCE.items() if k != "arr_0"})
    np.savez_compressed(os.path.join(out, "savez_compressed.npz"), **REFERENCE)
    with open(os.path.join(out, "stream.npz"), "wb") as raw:
        np.savez_compressed(Sink(raw), **REFERENCE)
    with zipfile.ZipFile(os.path.join(out, "stream.npz")) as zf:
        if not all(info.flag_bits & 0x08 for info in zf.infolist()):
            harness_error("zipfile wrote no data descriptors to the unseekable sink")
    limit = zipfile.ZIP64_LIMIT
    zipfile.ZIP64_LIMIT = 100
    try:
        np.savez(os.path.join(out, "zip64.npz"), **REFERENCE)
    finally:
        zipfile.ZIP64_LIMIT = limit
    with open(os.path.join(out, "zip64.npz"), "rb") as f:
        data = f.read()
    if b"PK\x06\x06" not in data or b"PK\x06\x07" not in data:
        harness_error("zipfile with ZIP64_LIMIT = 100 wrote no ZIP64 end-of-central-directory record")
    for file, compression in (("versions.npz", zipfile.ZIP_STORED), ("versions_compressed.npz", zipfile.ZIP_DEFLATED)):
        with zipfile.ZipFile(os.path.join(out, file), "w", allowZip64=True, compression=compression) as zf:
            for (name, want), version in zip(sorted(REFERENCE.items()), [(1, 0), (2, 0), (3, 0)] * 2):
                with zf.open(name + ".npy", "w", force_zip64=True) as f:
                    np.lib.format.write_array(f, want, version=version)
    big = np.random.default_rng(0).random((500, 700))
    np.savez_compressed(os.path.join(out, "big.npz"), big=big)
    with open(os.path.join(out, "big.bin"), "wb") as f:
        f.write(big.tobytes())
    print("numpy wrote the files")

run(main)
)PY";

#define SKIP_WITHOUT_NUMPY(dir)                                                                          \
  do {                                                                                                   \
    std::string probe_output;                                                                            \
    if (::access(numpy_python().c_str(), X_OK) != 0 ||                                                   \
        run_python(dir, "import numpy\n", {}, &probe_output) != 0) {                                     \
      GTEST_SKIP() << "no python with numpy at " << numpy_python() << " (launch/setup.sh makes it): " \
                   << probe_output;                                                                      \
    }                                                                                                    \
  } while (0)

void expect_python_ok(int status, const std::string& output) {
  if (status == 1) {
    ADD_FAILURE() << "numpy disagrees:\n" << output;
  } else if (status != 0) {
    ADD_FAILURE() << "HARNESS ERROR: the python check exited " << status << ":\n" << output;
  }
}

TEST(npz, NumpyLoadsWhatWeWrite) {
  TempDir dir;
  SKIP_WITHOUT_NUMPY(dir);
  const std::map<std::string, NpyArray> arrays = reference_arrays();
  const std::string plain = dir / "ours.npz", mixed = dir / "ours_zip64_mixed.npz", all = dir / "ours_zip64.npz";
  write_chunked(plain, arrays);
  write_chunked(mixed, arrays, 400);
  write_chunked(all, arrays, 0);
  std::string output;
  const int status = run_python(dir, std::string(kPythonCommon) + kNumpyReadsOurs, {plain, mixed, all}, &output);
  expect_python_ok(status, output);
}

TEST(npz, WeReadWhatNumpyWritesBitExactly) {
  TempDir dir;
  SKIP_WITHOUT_NUMPY(dir);
  std::string output;
  const int status = run_python(dir, std::string(kPythonCommon) + kNumpyWrites, {dir.str()}, &output);
  if (status != 0) {
    FAIL() << "HARNESS ERROR: numpy could not write the test files (exit " << status << "):\n" << output;
  }
  const std::map<std::string, NpyArray> want = reference_arrays();
  for (const char* name : {"savez", "savez_compressed", "stream", "zip64", "versions", "versions_compressed"}) {
    const std::string path = dir / (std::string(name) + ".npz");
    try {
      expect_same_arrays(want, ddpm::read_npz(path), name);
    } catch (const DataError& e) {
      ADD_FAILURE() << name << ": " << e.what();
    }
  }
  const Bytes versions = read_bytes(dir / "versions.npz");
  EXPECT_TRUE(contains(versions, std::string("\x93NUMPY\x02\x00", 8))) << "a format 2.0 entry was read";
  EXPECT_TRUE(contains(versions, std::string("\x93NUMPY\x03\x00", 8))) << "a format 3.0 entry was read";
  try {
    const auto big = ddpm::read_npz(dir / "big.npz");
    ASSERT_EQ(big.count("big"), 1u);
    EXPECT_EQ(big.at("big").dtype, NpyDtype::kFloat64);
    EXPECT_EQ(big.at("big").shape, (std::vector<int64_t>{500, 700}));
    EXPECT_TRUE(big.at("big").bytes == read_bytes(dir / "big.bin")) << "the random array differs";
  } catch (const DataError& e) {
    ADD_FAILURE() << "big: " << e.what();
  }
}

}  // namespace
