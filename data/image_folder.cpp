#include "data/image_folder.h"

#include <stb/stb_image.h>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <limits>
#include <memory>
#include <utility>

#include "data/data_error.h"
#include "data/file_bytes.h"

namespace ddpm {
namespace {

bool has_image_extension(const std::filesystem::path& path) {
  std::string ext = path.extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return std::tolower(c); });
  return ext == ".png" || ext == ".jpg" || ext == ".jpeg";
}

struct StbiFree {
  void operator()(unsigned char* pixels) const { stbi_image_free(pixels); }
};

bool is_png(const std::vector<uint8_t>& b) {
  static const uint8_t kSignature[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  return b.size() >= 8 && std::memcmp(b.data(), kSignature, 8) == 0;
}

bool is_jpeg(const std::vector<uint8_t>& b) { return b.size() >= 3 && b[0] == 0xff && b[1] == 0xd8 && b[2] == 0xff; }

// stb_image reserves memory for each IDAT chunk's declared length before it reads the chunk, so a few-byte PNG
// claiming a 2 GiB chunk costs a 2 GiB allocation. Walks the chunks as stb does (up to IEND) and returns the
// offset of the first chunk that runs past the end of the data, or npos.
size_t png_chunk_past_end(const std::vector<uint8_t>& b) {
  size_t p = 8;  // after the signature
  while (p + 8 <= b.size()) {
    const size_t length = size_t{b[p]} << 24 | size_t{b[p + 1]} << 16 | size_t{b[p + 2]} << 8 | b[p + 3];
    if (std::memcmp(b.data() + p + 4, "IEND", 4) == 0) return std::string::npos;
    if (length > b.size() - p - 8) return p;
    p += 12 + length;  // length, type, data, CRC
  }
  return std::string::npos;
}

// stb_image 2.27 (Debian 12's libstb) trusts a JPEG's tables where 2.28 checks them, so such files are refused
// before stb sees them:
// - a DHT segment declaring more than 256 codes makes it write past the table's 256 entries;
// - a scan naming a Huffman table that no DHT segment defined makes it decode with uninitialized memory (stb does
//   not clear its decoder state), which then indexes past the table;
// - a scan of a component whose quantization table no DQT segment defined gives pixels made of whatever the heap
//   held: no crash, but the same file would not give the same image twice.
// The marker segments are walked as stb reads them, up to EOI: a segment is skipped by its length field (stb
// accepts no segment of another length), bytes that are not a marker are skipped (entropy-coded data, or garbage
// stb would stop at), and so are stuffed bytes (FF 00) and restart markers. Every segment stb can reach is checked
// this way, and some it cannot. problem() says what is wrong and where ("the scan at offset ..."), or "".
class JpegTables {
 public:
  explicit JpegTables(const std::vector<uint8_t>& bytes) : b_(bytes) {}

  // Walks the segments up to EOI; the first problem, or "".
  std::string problem() {
    const size_t n = b_.size();
    size_t p = 2;  // after SOI
    while (p < n) {
      if (b_[p] != 0xff) {
        ++p;
        continue;
      }
      while (p < n && b_[p] == 0xff) ++p;  // fill bytes
      if (p >= n) return "";
      const size_t marker = b_[p++];
      if (marker == 0x00 || (marker >= 0xd0 && marker <= 0xd7)) continue;  // data, not a segment
      if (marker == 0xd9) return "";                                        // EOI: stb reads no further
      std::string found;
      if (marker == 0xc4) found = read_dht(p);
      if (marker == 0xdb) read_dqt(p);
      if ((marker == 0xc0 || marker == 0xc1 || marker == 0xc2) && components_.empty()) read_sof(p, marker == 0xc2);
      if (marker == 0xda) found = check_sos(p);
      if (!found.empty()) return found;
      p += length(p);  // SOS: its header; the scan's entropy-coded data follows
    }
    return "";
  }

 private:
  size_t at(size_t i) const { return i < b_.size() ? b_[i] : 0; }  // stb reads zeros past the end
  size_t length(size_t p) const { return at(p) << 8 | at(p + 1); }

  // DHT: tables of (class << 4 | id, 16 code counts, the symbols).
  std::string read_dht(size_t p) {
    int64_t left = static_cast<int64_t>(length(p)) - 2;
    for (size_t table = p + 2; left > 0 && table < b_.size();) {
      const size_t table_class = at(table) >> 4, id = at(table) & 15;
      if (table_class > 1 || id > 3) break;  // stb refuses this table itself
      size_t codes = 0;
      for (size_t i = 1; i <= 16; ++i) codes += at(table + i);
      if (codes > 256) return "the Huffman table at offset " + std::to_string(table + 1) + " declares more than 256 codes";
      huffman_defined_[table_class][id] = true;
      table += 17 + codes;
      left -= static_cast<int64_t>(17 + codes);
    }
    return "";
  }

  // DQT: tables of (precision << 4 | id, 64 entries of 1 or 2 bytes).
  void read_dqt(size_t p) {
    int64_t left = static_cast<int64_t>(length(p)) - 2;
    for (size_t table = p + 2; left > 0 && table < b_.size();) {
      const size_t precision = at(table) >> 4, id = at(table) & 15;
      if (precision > 1 || id > 3) break;  // stb refuses this table itself
      quantization_defined_[id] = true;
      const size_t size = precision ? 129 : 65;
      table += size;
      left -= static_cast<int64_t>(size);
    }
  }

  // SOF: precision, height, width, component count, then (id, sampling, quantization table) per component.
  void read_sof(size_t p, bool progressive) {
    progressive_ = progressive;
    for (size_t i = 0, count = at(p + 7); i < count; ++i) components_.emplace_back(at(p + 8 + 3 * i), at(p + 10 + 3 * i));
  }

  // SOS: component count, (id, DC table << 4 | AC table) per component, then Ss, Se, Ah << 4 | Al. A progressive
  // scan decodes with the DC tables only in a first DC scan, with the AC tables only in AC scans.
  std::string check_sos(size_t p) const {
    const size_t count = at(p + 2);
    const size_t first_coefficient = at(p + 3 + 2 * count), high_bit = at(p + 5 + 2 * count) >> 4;
    const bool uses_dc = !progressive_ || (first_coefficient == 0 && high_bit == 0);
    const bool uses_ac = !progressive_ || first_coefficient != 0;
    const std::string scan = "the scan at offset " + std::to_string(p - 2);
    for (size_t i = 0; i < count; ++i) {
      const size_t id = at(p + 3 + 2 * i), dc = at(p + 4 + 2 * i) >> 4, ac = at(p + 4 + 2 * i) & 15;
      if (uses_dc && dc <= 3 && !huffman_defined_[0][dc]) {
        return scan + " uses Huffman table DC " + std::to_string(dc) + ", which no DHT segment before it defines";
      }
      if (uses_ac && ac <= 3 && !huffman_defined_[1][ac]) {
        return scan + " uses Huffman table AC " + std::to_string(ac) + ", which no DHT segment before it defines";
      }
      for (const auto& [component, quantization] : components_) {
        if (component == id && quantization <= 3 && !quantization_defined_[quantization]) {
          return scan + " decodes component " + std::to_string(id) + " with quantization table " +
                 std::to_string(quantization) + ", which no DQT segment before it defines";
        }
      }
    }
    return "";
  }

  const std::vector<uint8_t>& b_;
  bool huffman_defined_[2][4] = {};  // [DC = 0, AC = 1][table id]
  bool quantization_defined_[4] = {};
  std::vector<std::pair<size_t, size_t>> components_;  // (id, quantization table) from the first SOF
  bool progressive_ = false;
};

}  // namespace

std::vector<std::string> list_image_files(const std::string& folder) {
  namespace fs = std::filesystem;
  std::error_code error;
  if (!fs::is_directory(folder, error)) {
    throw DataError("missing image folder: " + folder +
                    (fs::exists(folder) ? " is not a directory" : " does not exist"));
  }
  std::vector<std::string> files;
  for (auto it = fs::recursive_directory_iterator(folder, fs::directory_options::follow_directory_symlink, error);
       !error && it != fs::recursive_directory_iterator(); it.increment(error)) {
    if (it->is_regular_file() && has_image_extension(it->path())) files.push_back(it->path().string());
  }
  if (error) {
    throw DataError("cannot list image folder " + folder + ": " + error.message());
  }
  std::sort(files.begin(), files.end());
  if (files.empty()) {
    throw DataError("image folder " + folder + " holds no .png/.jpg/.jpeg files");
  }
  return files;
}

HwcImage decode_image_file(const std::string& path) { return decode_image(read_file_bytes(path), path); }

HwcImage decode_image(const std::vector<uint8_t>& bytes, const std::string& name, int64_t max_pixels) {
  if (bytes.empty()) {
    throw DataError("cannot decode image " + name + ": the file is empty (0 bytes)");
  }
  const std::string what = "cannot decode image " + name + " (" + std::to_string(bytes.size()) + " bytes): ";
  if (bytes.size() > static_cast<size_t>(std::numeric_limits<int>::max())) {
    throw DataError(what + "larger than stb_image reads (2 GiB)");
  }
  if (!is_png(bytes) && !is_jpeg(bytes)) {
    std::string start;
    for (size_t i = 0; i < std::min<size_t>(bytes.size(), 8); ++i) {
      char hex[4];
      std::snprintf(hex, sizeof hex, "%02x", bytes[i]);
      start += (i ? " " : "") + std::string(hex);
    }
    throw DataError(what + "not PNG or JPEG data (starts with " + start + ")");
  }
  if (is_png(bytes)) {
    const size_t bad = png_chunk_past_end(bytes);
    if (bad != std::string::npos) {
      throw DataError(what + "corrupt PNG: the chunk at offset " + std::to_string(bad) +
                      " runs past the end of the data");
    }
  } else {
    const std::string problem = JpegTables(bytes).problem();
    if (!problem.empty()) throw DataError(what + "corrupt JPEG: " + problem);
  }
  int width = 0, height = 0, channels = 0;
  if (!stbi_info_from_memory(bytes.data(), static_cast<int>(bytes.size()), &width, &height, &channels)) {
    throw DataError(what + stbi_failure_reason());
  }
  if (int64_t{width} * height > max_pixels) {
    throw DataError(what + std::to_string(width) + "x" + std::to_string(height) + " pixels, more than the " +
                    std::to_string(max_pixels) + " the loader decodes");
  }
  std::unique_ptr<unsigned char, StbiFree> pixels(
      stbi_load_from_memory(bytes.data(), static_cast<int>(bytes.size()), &width, &height, &channels, 0));
  if (!pixels) {
    throw DataError(what + stbi_failure_reason());
  }
  HwcImage image{width, height, channels,
                 std::vector<uint8_t>(pixels.get(), pixels.get() + int64_t{width} * height * channels)};
  // Resize in the image's own color space (as improved-diffusion does before convert("RGB")), minus alpha.
  return convert_channels(image, channels <= 2 ? 1 : 3);
}

RawImages load_image_folder(const std::string& folder, int64_t image_size, int64_t channels) {
  const std::vector<std::string> files = list_image_files(folder);
  const auto count = static_cast<int64_t>(files.size());
  RawImages dataset;
  dataset.source = folder;
  dataset.count = count;
  dataset.channels = channels;
  dataset.height = image_size;
  dataset.width = image_size;
  dataset.pixels.resize(static_cast<size_t>(count * channels * image_size * image_size));
  dataset.labels.assign(static_cast<size_t>(count), -1);
  const int64_t plane = image_size * image_size;
  for (int64_t i = 0; i < count; ++i) {
    const HwcImage image = convert_channels(resize_center_crop(decode_image_file(files[i]), image_size), channels);
    uint8_t* out = dataset.pixels.data() + i * channels * plane;
    for (int64_t p = 0; p < plane; ++p) {
      for (int64_t c = 0; c < channels; ++c) out[c * plane + p] = image.data[p * channels + c];
    }
  }
  return dataset;
}

}  // namespace ddpm
