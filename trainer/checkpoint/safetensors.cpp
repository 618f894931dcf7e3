#include "trainer/checkpoint/safetensors.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <limits>
#include <set>
#include <system_error>
#include <tuple>
#include <utility>

#include "data/printable.h"

namespace ddpm {

namespace {

using json = nlohmann::json;

constexpr uint64_t kLengthBytes = 8;  // the u64 header length before the JSON

struct DtypeSize {
  const char* name;
  size_t size;
};
constexpr DtypeSize kDtypes[] = {{"BOOL", 1}, {"U8", 1},  {"I8", 1},  {"U16", 2}, {"I16", 2},
                                 {"F16", 2},  {"BF16", 2}, {"U32", 4}, {"I32", 4}, {"F32", 4},
                                 {"U64", 8},  {"I64", 8},  {"F64", 8}};
// Dtypes of the format that this reader does not convert: named as unsupported rather than unknown, so that a
// message tells a valid file apart from a corrupt one.
constexpr const char* kUnsupportedDtypes[] = {"F8_E4M3", "F8_E5M2", "F8_E8M0", "F4", "F6_E2M3", "F6_E3M2", "C64"};

// 0 for a dtype outside kDtypes: callers turn that into a message with their own context.
size_t element_size_or_zero(const std::string& dtype) {
  for (const DtypeSize& known : kDtypes) {
    if (dtype == known.name) return known.size;
  }
  return 0;
}

bool is_unsupported_dtype(const std::string& dtype) {
  return std::any_of(std::begin(kUnsupportedDtypes), std::end(kUnsupportedDtypes),
                     [&](const char* name) { return dtype == name; });
}


// A name from the file in quotes, a quote inside it escaped so that the name's end is unambiguous.
std::string quote_name(const std::string& raw) { return "'" + printable_bytes(raw, '\'') + "'"; }

std::string shape_text(const std::vector<int64_t>& shape) {
  std::string out = "[";
  for (size_t i = 0; i < shape.size(); ++i) out += (i > 0 ? ", " : "") + std::to_string(shape[i]);
  return out + "]";
}

std::string range_text(uint64_t begin, uint64_t end) {
  return "[" + std::to_string(begin) + ", " + std::to_string(end) + "]";
}

// Where offset `relative` of the data buffer lies in the file. Offsets come from the file and may be near 2^64:
// then the sum's terms are printed instead of a wrapped-around sum.
std::string file_offset(uint64_t data_offset, uint64_t relative) {
  if (relative > std::numeric_limits<uint64_t>::max() - data_offset) {
    return std::to_string(data_offset) + " + " + std::to_string(relative);
  }
  return std::to_string(data_offset + relative);
}

[[noreturn]] void fail(const std::string& path, const std::string& what) {
  throw SafetensorsError("safetensors file " + path + ": " + what);
}

[[noreturn]] void fail_tensor(const std::string& path, const std::string& name, const std::string& what) {
  fail(path, "tensor " + quote_name(name) + ": " + what);
}

uint64_t read_le64(const std::string& bytes, size_t offset) {
  uint64_t value = 0;
  for (size_t i = 0; i < 8; ++i) value |= static_cast<uint64_t>(static_cast<uint8_t>(bytes[offset + i])) << (8 * i);
  return value;
}

void append_le64(std::string& out, uint64_t value) {
  for (size_t i = 0; i < 8; ++i) out += static_cast<char>(static_cast<uint8_t>(value >> (8 * i)));
}

// numel * element size with overflow checks in uint64, in the reference's order (the dimensions left to right
// with usize::checked_mul, then the element size): false for a negative dimension or an overflow, even when a
// later dimension is 0, so that this reader and the reference accept the same shapes.
bool checked_byte_size(const std::vector<int64_t>& shape, size_t element_size, uint64_t* bytes) {
  uint64_t elements = 1;
  for (const int64_t dim : shape) {
    if (dim < 0 || __builtin_mul_overflow(elements, static_cast<uint64_t>(dim), &elements)) return false;
  }
  return !__builtin_mul_overflow(elements, static_cast<uint64_t>(element_size), bytes);
}

// ---- Reading: the framing --------------------------------------------------------------------------------------

// The header length N, checked against the reference's limit and the file size, and the JSON's first byte.
uint64_t read_header_length(const std::string& bytes, const std::string& path) {
  if (bytes.size() < kLengthBytes) {
    fail(path, "truncated: " + std::to_string(bytes.size()) + " bytes, shorter than the 8-byte header length");
  }
  const uint64_t length = read_le64(bytes, 0);
  if (length > kSafetensorsMaxHeaderBytes) {
    fail(path, "header length " + std::to_string(length) + " (the u64 at offset 0) is over the limit of " +
                   std::to_string(kSafetensorsMaxHeaderBytes) + " bytes");
  }
  if (kLengthBytes + length > bytes.size()) {
    fail(path, "truncated: the header of " + std::to_string(length) +
                   " bytes (length at offset 0) runs past the end of the " + std::to_string(bytes.size()) +
                   "-byte file");
  }
  if (length == 0) fail(path, "empty header (header length 0 at offset 0)");
  if (bytes[kLengthBytes] != '{') {
    char text[8];
    std::snprintf(text, sizeof text, "0x%02x", static_cast<uint8_t>(bytes[kLengthBytes]));
    fail(path, "the header does not start with '{' (byte " + std::string(text) + " at offset 8)");
  }
  return length;
}

// ---- Reading: the JSON -----------------------------------------------------------------------------------------

// nlohmann keeps the last of duplicate keys without a word; the reference's serde refuses some and keeps others.
// A header whose meaning depends on which copy wins is refused: this parser callback sees every key of every
// object, at any depth, in the order they come.
class DuplicateKeyCheck {
 public:
  explicit DuplicateKeyCheck(const std::string& path) : path_(path) {}

  bool operator()(int /*depth*/, json::parse_event_t event, const json& parsed) {
    switch (event) {
      case json::parse_event_t::object_start:
      case json::parse_event_t::array_start:
        open(event == json::parse_event_t::object_start);
        break;
      case json::parse_event_t::object_end:
      case json::parse_event_t::array_end:
        if (!frames_.empty()) frames_.pop_back();
        break;
      case json::parse_event_t::key:
        add_key(parsed.get_ref<const std::string&>());
        break;
      case json::parse_event_t::value:
        break;
    }
    return true;  // keep everything: the callback only watches
  }

 private:
  struct Frame {
    bool is_object = false;
    std::string owner;  // the key of the outermost object this one lies in ("" at the top level)
    std::set<std::string> keys;
    std::string last_key;
  };

  void open(bool is_object) {
    Frame frame;
    frame.is_object = is_object;
    if (!frames_.empty()) {
      const Frame& parent = frames_.back();
      // Messages name the tensor (or __metadata__) a nested object belongs to: the top level's key.
      frame.owner = frames_.size() == 1 ? parent.last_key : parent.owner;
    }
    frames_.push_back(std::move(frame));
  }

  void add_key(const std::string& key) {
    if (frames_.empty()) return;  // not reached: a key is always inside an object
    Frame& frame = frames_.back();
    if (!frame.keys.insert(key).second) {
      if (frames_.size() == 1) {
        const std::string what = key == kSafetensorsMetadataKey ? "the key " : "the tensor name ";
        fail(path_, what + quote_name(key) + " appears twice in the header");
      }
      fail(path_, "the key " + quote_name(key) + " appears twice in the header's entry " + quote_name(frame.owner));
    }
    frame.last_key = key;
  }

  const std::string& path_;
  std::vector<Frame> frames_;
};

json parse_header_json(const std::string& bytes, uint64_t header_length, const std::string& path) {
  const auto first = bytes.begin() + static_cast<std::ptrdiff_t>(kLengthBytes);
  const auto last = first + static_cast<std::ptrdiff_t>(header_length);
  // nlohmann's lexer takes a NUL byte outside a string for the end of the input and would ignore what follows
  // it; JSON holds no raw NUL anywhere (inside strings it must be escaped), so one is refused here.
  const auto nul = std::find(first, last, '\0');
  if (nul != last) {
    fail(path, "the header holds a NUL byte at file offset " + std::to_string(nul - bytes.begin()) +
                   ", which JSON does not allow");
  }
  DuplicateKeyCheck check(path);
  // The callback is copied into a std::function: it holds the check by reference so that its state is shared.
  const json::parser_callback_t callback = [&check](int depth, json::parse_event_t event, json& parsed) {
    return check(depth, event, parsed);
  };
  json header;
  try {
    header = json::parse(first, last, callback);
  } catch (const json::parse_error& e) {
    // e.byte counts from 1 (the character where the parser stopped); the file offset adds the length field.
    const uint64_t at = e.byte > 0 ? e.byte - 1 : 0;
    fail(path, "the header is not valid JSON at byte " + std::to_string(at) + " of the header (file offset " +
                   std::to_string(kLengthBytes + at) + "): " + printable_bytes(e.what()));
  } catch (const json::exception& e) {
    fail(path, "the header is not valid JSON: " + printable_bytes(e.what()));
  }
  if (!header.is_object()) fail(path, std::string("the header is a JSON ") + header.type_name() + ", not an object");
  return header;
}

std::map<std::string, std::string> parse_metadata(const json& value, const std::string& path) {
  if (!value.is_object()) {
    fail(path, std::string("__metadata__ is a JSON ") + value.type_name() + ", not an object of strings");
  }
  std::map<std::string, std::string> metadata;
  for (const auto& [key, item] : value.items()) {
    if (!item.is_string()) {
      fail(path, "__metadata__ entry " + quote_name(key) + " is a JSON " + item.type_name() + ", not a string");
    }
    metadata.emplace(key, item.get<std::string>());
  }
  return metadata;
}

// A JSON value as a message shows it: numbers as they are, anything else by its type (it may be large or deep).
std::string describe(const json& value) {
  if (value.is_number()) return value.dump();
  return std::string("a JSON ") + value.type_name();
}

// A non-negative JSON integer at most `limit`; false otherwise (negative, fractional, too large, not a number).
// nlohmann stores integers past 2^64 as floats, so those are refused as not integers.
bool as_count(const json& value, uint64_t limit, uint64_t* out) {
  if (value.is_number_unsigned()) {
    *out = value.get<uint64_t>();
  } else if (value.is_number_integer() && value.get<int64_t>() == 0) {
    *out = 0;  // "-0", which nlohmann reads as a signed zero
  } else {
    return false;
  }
  return *out <= limit;
}

const json& required_field(const json& entry, const char* field, const std::string& name, const std::string& path) {
  const auto it = entry.find(field);
  if (it == entry.end()) fail_tensor(path, name, std::string("no \"") + field + "\" in its header entry");
  return *it;
}

std::string parse_dtype(const json& value, const std::string& name, const std::string& path) {
  if (!value.is_string()) fail_tensor(path, name, "dtype is " + describe(value) + ", not a string");
  const std::string dtype = value.get<std::string>();
  if (is_unsupported_dtype(dtype)) fail_tensor(path, name, "dtype " + quote_name(dtype) + " is not supported");
  if (element_size_or_zero(dtype) == 0) fail_tensor(path, name, "unknown dtype " + quote_name(dtype));
  return dtype;
}

std::vector<int64_t> parse_shape(const json& value, const std::string& name, const std::string& path) {
  if (!value.is_array()) fail_tensor(path, name, "shape is " + describe(value) + ", not an array");
  std::vector<int64_t> shape;
  for (size_t i = 0; i < value.size(); ++i) {
    uint64_t dim = 0;
    if (!as_count(value[i], static_cast<uint64_t>(std::numeric_limits<int64_t>::max()), &dim)) {
      fail_tensor(path, name, "shape[" + std::to_string(i) + "] is " + describe(value[i]) +
                                  ", not a non-negative integer that fits int64");
    }
    shape.push_back(static_cast<int64_t>(dim));
  }
  return shape;
}

std::pair<uint64_t, uint64_t> parse_offsets(const json& value, const std::string& name, const std::string& path) {
  if (!value.is_array() || value.size() != 2) {
    fail_tensor(path, name, "data_offsets is " + (value.is_array() ? "an array of " + std::to_string(value.size()) +
                                                                         " elements" : describe(value)) +
                                ", not [begin, end]");
  }
  uint64_t bounds[2] = {0, 0};
  for (size_t i = 0; i < 2; ++i) {
    if (!as_count(value[i], std::numeric_limits<uint64_t>::max(), &bounds[i])) {
      fail_tensor(path, name, "data_offsets[" + std::to_string(i) + "] is " + describe(value[i]) +
                                  ", not a non-negative integer");
    }
  }
  if (bounds[0] > bounds[1]) {
    fail_tensor(path, name, "data_offsets " + range_text(bounds[0], bounds[1]) + " begin after they end");
  }
  return {bounds[0], bounds[1]};
}

SafetensorsTensor parse_tensor_entry(const std::string& name, const json& entry, const std::string& path) {
  if (name.empty()) fail(path, "a tensor has an empty name");
  if (!entry.is_object()) fail_tensor(path, name, "its header entry is " + describe(entry) + ", not an object");
  for (const auto& item : entry.items()) {
    const std::string& key = item.key();
    if (key != "dtype" && key != "shape" && key != "data_offsets") {
      fail_tensor(path, name, "unknown key " + quote_name(key) + " in its header entry");
    }
  }
  SafetensorsTensor tensor;
  tensor.name = name;
  tensor.dtype = parse_dtype(required_field(entry, "dtype", name, path), name, path);
  tensor.shape = parse_shape(required_field(entry, "shape", name, path), name, path);
  std::tie(tensor.begin, tensor.end) = parse_offsets(required_field(entry, "data_offsets", name, path), name, path);
  uint64_t expected = 0;
  if (!checked_byte_size(tensor.shape, element_size_or_zero(tensor.dtype), &expected)) {
    fail_tensor(path, name, "shape " + shape_text(tensor.shape) + " of " + tensor.dtype + " overflows 2^64 bytes");
  }
  if (expected != tensor.end - tensor.begin) {
    fail_tensor(path, name, "shape " + shape_text(tensor.shape) + " of " + tensor.dtype + " needs " +
                                std::to_string(expected) + " bytes, data_offsets " +
                                range_text(tensor.begin, tensor.end) + " hold " +
                                std::to_string(tensor.end - tensor.begin));
  }
  return tensor;
}

// ---- Reading: the data buffer ----------------------------------------------------------------------------------

// Zero-size tensors sort before a tensor that starts where they do, so that they tile; the name breaks the rest
// of the ties and makes the order deterministic.
bool by_range(const SafetensorsTensor& a, const SafetensorsTensor& b) {
  return std::tie(a.begin, a.end, a.name) < std::tie(b.begin, b.end, b.name);
}

// The ranges, sorted, must cover [0, buffer_size) exactly: a gap or trailing bytes would be data no tensor owns
// (a sign of a damaged or hand-edited file), an overlap two tensors sharing bytes, a range past the end a
// truncated file.
void check_tiling(const std::vector<SafetensorsTensor>& tensors, uint64_t data_offset, uint64_t buffer_size,
                  const std::string& path) {
  const std::string file_size = std::to_string(data_offset + buffer_size);
  uint64_t covered = 0;  // the tensors so far cover [0, covered)
  const SafetensorsTensor* previous = nullptr;
  for (const SafetensorsTensor& t : tensors) {
    if (t.end > buffer_size) {
      fail_tensor(path, t.name, "data_offsets " + range_text(t.begin, t.end) + " end at file offset " +
                                    file_offset(data_offset, t.end) + ", outside the " + file_size +
                                    "-byte file (truncated?)");
    }
    if (t.begin > covered) {
      const std::string before = previous == nullptr ? "the data buffer starts"
                                                     : "tensor " + quote_name(previous->name) + " ends";
      fail_tensor(path, t.name, "data_offsets " + range_text(t.begin, t.end) + " start at file offset " +
                                    file_offset(data_offset, t.begin) + ", but " + before + " at file offset " +
                                    file_offset(data_offset, covered) + ": a gap of " +
                                    std::to_string(t.begin - covered) + " bytes");
    }
    if (t.begin < covered) {
      fail_tensor(path, t.name, "data_offsets " + range_text(t.begin, t.end) + " overlap tensor " +
                                    quote_name(previous->name) + " " + range_text(previous->begin, previous->end) +
                                    " at file offset " + file_offset(data_offset, t.begin));
    }
    covered = t.end;
    previous = &t;
  }
  if (covered != buffer_size) {
    fail(path, std::to_string(buffer_size - covered) + " trailing bytes from file offset " +
                   file_offset(data_offset, covered) + " to the end of the " + file_size +
                   "-byte file, which no tensor's data_offsets cover");
  }
}

// ---- Writing ---------------------------------------------------------------------------------------------------

// A JSON string literal. Names and metadata come from callers and may hold any bytes: JSON needs UTF-8.
std::string json_string(const std::string& text, const std::string& what) {
  try {
    return json(text).dump();
  } catch (const json::exception&) {
    throw SafetensorsError("safetensors encode: " + what + " is not valid UTF-8");
  }
}

void check_input(const SafetensorsInput& input) {
  const std::string context = "safetensors encode: tensor " + quote_name(input.name) + ": ";
  if (input.name.empty()) throw SafetensorsError("safetensors encode: a tensor has an empty name");
  if (input.name == kSafetensorsMetadataKey) {
    throw SafetensorsError(context + "the name is reserved for the metadata");
  }
  const size_t element_size = element_size_or_zero(input.dtype);
  if (element_size == 0) throw SafetensorsError(context + "unknown or unsupported dtype " + quote_name(input.dtype));
  for (const int64_t dim : input.shape) {
    if (dim < 0) throw SafetensorsError(context + "negative dimension in shape " + shape_text(input.shape));
  }
  uint64_t expected = 0;
  if (!checked_byte_size(input.shape, element_size, &expected)) {
    throw SafetensorsError(context + "shape " + shape_text(input.shape) + " of " + input.dtype +
                           " overflows 2^64 bytes");
  }
  if (expected != input.data.size()) {
    throw SafetensorsError(context + "shape " + shape_text(input.shape) + " of " + input.dtype + " needs " +
                           std::to_string(expected) + " bytes, the data holds " + std::to_string(input.data.size()));
  }
}

std::string metadata_json(const std::map<std::string, std::string>& metadata) {
  std::string out = "{";
  for (const auto& [key, value] : metadata) {
    if (out.size() > 1) out += ",";
    out += json_string(key, "metadata key " + quote_name(key)) + ":" +
           json_string(value, "the value of metadata key " + quote_name(key));
  }
  return out + "}";
}

// One tensor's header entry, keys in the reference writer's order (serde serializes TensorInfo's fields as
// declared): compact, so that a file of the same tensors has the same bytes as the reference's.
std::string tensor_json(const SafetensorsInput& input, uint64_t begin, uint64_t end) {
  std::string shape = "[";
  for (size_t i = 0; i < input.shape.size(); ++i) shape += (i > 0 ? "," : "") + std::to_string(input.shape[i]);
  shape += "]";
  return json_string(input.name, "the name of tensor " + quote_name(input.name)) + ":{\"dtype\":" +
         json_string(input.dtype, "a dtype") + ",\"shape\":" + shape + ",\"data_offsets\":[" +
         std::to_string(begin) + "," + std::to_string(end) + "]}";
}

}  // namespace

const SafetensorsTensor* SafetensorsFile::find(const std::string& name) const {
  const auto it = std::find_if(tensors.begin(), tensors.end(),
                               [&](const SafetensorsTensor& t) { return t.name == name; });
  return it == tensors.end() ? nullptr : &*it;
}

size_t safetensors_element_size(const std::string& dtype) {
  const size_t size = element_size_or_zero(dtype);
  if (size == 0) {
    throw SafetensorsError(std::string("safetensors: ") + (is_unsupported_dtype(dtype) ? "unsupported" : "unknown") +
                           " dtype " + quote_name(dtype));
  }
  return size;
}

SafetensorsFile parse_safetensors(std::string bytes, const std::string& path) {
  const uint64_t header_length = read_header_length(bytes, path);
  const json header = parse_header_json(bytes, header_length, path);
  SafetensorsFile file;
  file.path = path;
  file.data_offset = kLengthBytes + header_length;
  for (const auto& item : header.items()) {
    if (item.key() == kSafetensorsMetadataKey) {
      file.metadata = parse_metadata(item.value(), path);
    } else {
      file.tensors.push_back(parse_tensor_entry(item.key(), item.value(), path));
    }
  }
  std::sort(file.tensors.begin(), file.tensors.end(), by_range);
  check_tiling(file.tensors, file.data_offset, bytes.size() - file.data_offset, path);
  file.bytes = std::move(bytes);
  return file;
}

SafetensorsFile read_safetensors(const std::filesystem::path& path) {
  const std::string name = path.string();
  std::error_code error;
  const std::filesystem::file_status status = std::filesystem::status(path, error);
  if (error) fail(name, "cannot open: " + error.message());
  // Checked before opening: a directory opens fine with fopen on Linux and only fails on the first read.
  if (!std::filesystem::is_regular_file(status)) fail(name, "cannot read: not a regular file");
  std::FILE* stream = std::fopen(name.c_str(), "rb");
  if (stream == nullptr) fail(name, std::string("cannot open: ") + std::strerror(errno));
  std::string bytes;
  char buffer[1 << 16];
  size_t got = 0;
  while ((got = std::fread(buffer, 1, sizeof buffer, stream)) > 0) bytes.append(buffer, got);
  const bool failed = std::ferror(stream) != 0;
  const int read_errno = errno;
  std::fclose(stream);
  if (failed) {
    fail(name, "cannot read at offset " + std::to_string(bytes.size()) + ": " + std::strerror(read_errno));
  }
  return parse_safetensors(std::move(bytes), name);
}

std::string encode_safetensors(const std::vector<SafetensorsInput>& tensors,
                               const std::map<std::string, std::string>& metadata) {
  // Name order: the same tensors give the same bytes whatever order the caller lists them in.
  std::map<std::string, const SafetensorsInput*> by_name;
  for (const SafetensorsInput& input : tensors) {
    check_input(input);
    if (!by_name.emplace(input.name, &input).second) {
      throw SafetensorsError("safetensors encode: tensor " + quote_name(input.name) + " appears twice");
    }
  }
  std::string header = "{";
  if (!metadata.empty()) header += std::string("\"") + kSafetensorsMetadataKey + "\":" + metadata_json(metadata);
  uint64_t offset = 0;
  for (const auto& [name, input] : by_name) {
    if (header.size() > 1) header += ",";
    header += tensor_json(*input, offset, offset + input->data.size());
    offset += input->data.size();
  }
  header += "}";
  // Spaces pad the header so that the data starts at a multiple of 8, as the reference writer does.
  const uint64_t padded = (kLengthBytes + header.size() + kSafetensorsAlignment - 1) / kSafetensorsAlignment *
                          kSafetensorsAlignment;
  header.append(padded - kLengthBytes - header.size(), ' ');
  if (header.size() > kSafetensorsMaxHeaderBytes) {
    throw SafetensorsError("safetensors encode: the header would be " + std::to_string(header.size()) +
                           " bytes, over the readers' limit of " + std::to_string(kSafetensorsMaxHeaderBytes));
  }
  std::string out;
  out.reserve(kLengthBytes + header.size() + offset);
  append_le64(out, header.size());
  out += header;
  for (const auto& [name, input] : by_name) out += input->data;
  return out;
}

}  // namespace ddpm
