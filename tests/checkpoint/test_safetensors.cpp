// safetensors files: round trips through encode and parse, the bytes the reference writer produces, and the
// refusal of every malformed header or data buffer with the file, the key and the offset named.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "trainer/checkpoint/safetensors.h"

namespace {

namespace fs = std::filesystem;

const std::string kPath = "weights/test.safetensors";

std::string le64(uint64_t value) {
  std::string out;
  for (int i = 0; i < 8; ++i) out += static_cast<char>(static_cast<uint8_t>(value >> (8 * i)));
  return out;
}

// A file from its header text and data buffer, as a hand-written (or damaged) file would be.
std::string file_of(const std::string& header, const std::string& data = "") {
  return le64(header.size()) + header + data;
}

template <class T>
std::string bytes_of(const std::vector<T>& values) {
  std::string out(values.size() * sizeof(T), '\0');
  if (!values.empty()) std::memcpy(out.data(), values.data(), out.size());
  return out;
}

// The message of the SafetensorsError `run` throws; a test failure when it throws nothing.
std::string error_of(const std::function<void()>& run) {
  try {
    run();
  } catch (const ddpm::SafetensorsError& e) {
    return e.what();
  }
  ADD_FAILURE() << "expected a SafetensorsError";
  return "";
}

std::string parse_error(const std::string& bytes) {
  return error_of([&] { ddpm::parse_safetensors(bytes, kPath); });
}

::testing::AssertionResult has_all(const std::string& message, const std::vector<std::string>& fragments) {
  for (const std::string& fragment : fragments) {
    if (message.find(fragment) == std::string::npos) {
      return ::testing::AssertionFailure() << "message: " << message << "\nmissing: " << fragment;
    }
  }
  return ::testing::AssertionSuccess();
}

// Every refusal of parse_safetensors starts with the file's name; `fragments` are the key and offset it names.
void expect_refused(const std::string& bytes, const std::vector<std::string>& fragments) {
  const std::string message = parse_error(bytes);
  EXPECT_EQ(message.rfind("safetensors file " + kPath + ": ", 0), 0u) << message;
  EXPECT_TRUE(has_all(message, fragments));
}

// A one-tensor F32 header entry.
std::string f32_entry(const std::string& name, const std::string& shape, uint64_t begin, uint64_t end) {
  return "\"" + name + "\":{\"dtype\":\"F32\",\"shape\":" + shape + ",\"data_offsets\":[" + std::to_string(begin) +
         "," + std::to_string(end) + "]}";
}

std::vector<ddpm::SafetensorsInput> mixed_inputs() {
  return {
      {"model.weight", "F32", {2, 3}, bytes_of(std::vector<float>{1, -2, 3.5f, 0, 1e-8f, -1e8f})},
      {"ema.bf16", "BF16", {3}, bytes_of(std::vector<uint16_t>{0x3f80, 0xc000, 0x7fc0})},
      {"half", "F16", {2, 1}, bytes_of(std::vector<uint16_t>{0x3c00, 0xbc00})},
      {"step", "I64", {}, bytes_of(std::vector<int64_t>{123456789012345})},  // 0-dim
      {"empty", "F32", {0, 4}, ""},                                            // zero-size
      {"flags", "BOOL", {5}, std::string("\x01\x00\x01\x01\x00", 5)},
      {"bytes", "U8", {3}, "abc"},
      {"double", "F64", {1}, bytes_of(std::vector<double>{3.141592653589793})},
      {"i8", "I8", {2}, "\xff\x7f"},
      {"u16", "U16", {1}, bytes_of(std::vector<uint16_t>{65535})},
      {"i16", "I16", {1}, bytes_of(std::vector<int16_t>{-2})},
      {"u32", "U32", {1}, bytes_of(std::vector<uint32_t>{4000000000u})},
      {"i32", "I32", {1, 1, 1}, bytes_of(std::vector<int32_t>{-7})},
      {"u64", "U64", {1}, bytes_of(std::vector<uint64_t>{UINT64_MAX})},
  };
}

void expect_same_tensors(const ddpm::SafetensorsFile& file, const std::vector<ddpm::SafetensorsInput>& inputs) {
  ASSERT_EQ(file.tensors.size(), inputs.size());
  for (const ddpm::SafetensorsInput& input : inputs) {
    const ddpm::SafetensorsTensor* tensor = file.find(input.name);
    ASSERT_NE(tensor, nullptr) << input.name;
    EXPECT_EQ(tensor->dtype, input.dtype) << input.name;
    EXPECT_EQ(tensor->shape, input.shape) << input.name;
    ASSERT_EQ(tensor->end - tensor->begin, input.data.size()) << input.name;
    EXPECT_EQ(std::string(file.data(*tensor), input.data.size()), input.data) << input.name;
  }
}

// ---- Round trips and the reference's bytes ---------------------------------------------------------------------

TEST(Safetensors, RoundTripKeepsNamesDtypesShapesBytesAndMetadata) {
  const std::vector<ddpm::SafetensorsInput> inputs = mixed_inputs();
  const std::map<std::string, std::string> metadata = {{"format", "pt"}, {"step", "1500"}, {"note", "a \"quoted\"\n"}};
  const std::string bytes = ddpm::encode_safetensors(inputs, metadata);
  const ddpm::SafetensorsFile file = ddpm::parse_safetensors(bytes, kPath);
  EXPECT_EQ(file.path, kPath);
  EXPECT_EQ(file.metadata, metadata);
  EXPECT_EQ(file.data_offset % 8, 0u);
  EXPECT_EQ(file.bytes, bytes);
  expect_same_tensors(file, inputs);
  // Sorted by begin, and the writer laid the data out in name order.
  for (size_t i = 1; i < file.tensors.size(); ++i) {
    EXPECT_LE(file.tensors[i - 1].begin, file.tensors[i].begin);
    EXPECT_EQ(file.tensors[i - 1].end, file.tensors[i].begin);
    if (file.tensors[i - 1].end != file.tensors[i - 1].begin) {
      EXPECT_LT(file.tensors[i - 1].name, file.tensors[i].name);
    }
  }
  EXPECT_EQ(file.find("absent"), nullptr);
}

TEST(Safetensors, RoundTripWithoutMetadataAndInAnyInputOrder) {
  std::vector<ddpm::SafetensorsInput> inputs = mixed_inputs();
  const std::string forward = ddpm::encode_safetensors(inputs);
  std::reverse(inputs.begin(), inputs.end());
  EXPECT_EQ(ddpm::encode_safetensors(inputs), forward);  // name order: the same tensors, the same bytes
  EXPECT_EQ(forward.find("__metadata__"), std::string::npos);
  const ddpm::SafetensorsFile file = ddpm::parse_safetensors(forward, kPath);
  EXPECT_TRUE(file.metadata.empty());
  EXPECT_EQ(file.data_offset % 8, 0u);
  expect_same_tensors(file, inputs);
}

TEST(Safetensors, EmptyFileIsValid) {
  const std::string bytes = ddpm::encode_safetensors({});
  EXPECT_EQ(bytes, le64(8) + "{}      ");
  const ddpm::SafetensorsFile file = ddpm::parse_safetensors(bytes, kPath);
  EXPECT_TRUE(file.tensors.empty());
  EXPECT_EQ(file.data_offset, 16u);
  EXPECT_TRUE(ddpm::parse_safetensors(file_of("{}"), kPath).tensors.empty());  // unpadded
}

// The bytes safetensors' reference writer (serialize in safetensors/src/tensor.rs) produces for one F32 tensor "a"
// holding 1.0, 2.0: compact JSON with the fields in TensorInfo's order, padded with spaces to a multiple of 8.
TEST(Safetensors, GoldenBytesOfTheReferenceWriter) {
  const std::string json = R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";
  ASSERT_EQ(json.size(), 54u);
  const std::string expected = std::string("\x38\0\0\0\0\0\0\0", 8) + json + "  " +  // 56 = 54 + 2 spaces
                               std::string("\x00\x00\x80\x3f\x00\x00\x00\x40", 8);   // 1.0f, 2.0f little-endian
  const std::string bytes =
      ddpm::encode_safetensors({{"a", "F32", {2}, bytes_of(std::vector<float>{1.0f, 2.0f})}});
  EXPECT_EQ(bytes, expected);
  const ddpm::SafetensorsFile file = ddpm::parse_safetensors(expected, kPath);
  EXPECT_EQ(file.data_offset, 64u);
  ASSERT_EQ(file.tensors.size(), 1u);
  float values[2];
  std::memcpy(values, file.data(file.tensors[0]), sizeof values);
  EXPECT_EQ(values[0], 1.0f);
  EXPECT_EQ(values[1], 2.0f);
}

// With metadata the reference writes "__metadata__" first (HashMetadata's first field).
TEST(Safetensors, GoldenBytesWithMetadata) {
  const std::string json =
      R"({"__metadata__":{"format":"pt"},"x":{"dtype":"U8","shape":[],"data_offsets":[0,1]}})";
  ASSERT_EQ(json.size(), 83u);
  const std::string expected = std::string("\x58\0\0\0\0\0\0\0", 8) + json + "     " + "\x2a";  // 88 = 83 + 5
  EXPECT_EQ(ddpm::encode_safetensors({{"x", "U8", {}, "\x2a"}}, {{"format", "pt"}}), expected);
}

// Files by other writers: header keys in any order, data not in name order, no padding or more of it.
TEST(Safetensors, ReadsHeadersInAnyOrderAndPadding) {
  const std::string header = R"({"b":{"data_offsets":[0,4],"shape":[1],"dtype":"I32"},)"
                             R"("a":{"shape":[2],"dtype":"U16","data_offsets":[4,8]}, "z": {"dtype":"F16",)"
                             R"("shape":[0],"data_offsets":[8,8]}})";
  for (const std::string& padding : {std::string(), std::string(13, ' ')}) {
    const ddpm::SafetensorsFile file = ddpm::parse_safetensors(file_of(header + padding, "BBBBAAAA"), kPath);
    ASSERT_EQ(file.tensors.size(), 3u);
    EXPECT_EQ(file.tensors[0].name, "b");
    EXPECT_EQ(file.tensors[1].name, "a");
    EXPECT_EQ(file.tensors[2].name, "z");
    EXPECT_EQ(std::string(file.data(file.tensors[1]), 4), "AAAA");
    EXPECT_EQ(file.data_offset, 8 + header.size() + padding.size());
  }
}

// A zero-size tensor may sit where another one starts: it sorts first, and the ranges still tile.
TEST(Safetensors, ZeroSizeTensorsTileAnywhere) {
  const std::string header = "{" + f32_entry("a", "[1]", 0, 4) + "," + f32_entry("b", "[0]", 0, 0) + "," +
                             f32_entry("c", "[0, 5]", 4, 4) + "," + f32_entry("d", "[1]", 4, 8) + "}";
  const ddpm::SafetensorsFile file = ddpm::parse_safetensors(file_of(header, "aaaadddd"), kPath);
  ASSERT_EQ(file.tensors.size(), 4u);
  EXPECT_EQ(file.tensors[0].name, "b");
  EXPECT_EQ(file.tensors[1].name, "a");
  EXPECT_EQ(file.tensors[2].name, "c");
  EXPECT_EQ(file.tensors[3].name, "d");
}

TEST(Safetensors, ElementSizes) {
  const std::map<std::string, size_t> sizes = {{"BOOL", 1}, {"U8", 1},  {"I8", 1},  {"U16", 2}, {"I16", 2},
                                               {"F16", 2},  {"BF16", 2}, {"U32", 4}, {"I32", 4}, {"F32", 4},
                                               {"U64", 8},  {"I64", 8},  {"F64", 8}};
  for (const auto& [dtype, size] : sizes) EXPECT_EQ(ddpm::safetensors_element_size(dtype), size) << dtype;
  EXPECT_TRUE(has_all(error_of([] { ddpm::safetensors_element_size("F128"); }), {"unknown dtype 'F128'"}));
  EXPECT_TRUE(has_all(error_of([] { ddpm::safetensors_element_size("F8_E4M3"); }), {"unsupported dtype 'F8_E4M3'"}));
  EXPECT_TRUE(has_all(error_of([] { ddpm::safetensors_element_size("f32"); }), {"unknown dtype 'f32'"}));
}

// ---- Refusals: the framing -------------------------------------------------------------------------------------

TEST(SafetensorsRefusal, ShorterThanTheLength) {
  expect_refused("", {"truncated: 0 bytes, shorter than the 8-byte header length"});
  expect_refused(std::string("\x02\0\0\0\0", 5), {"truncated: 5 bytes"});
}

TEST(SafetensorsRefusal, HeaderLengthOverTheLimit) {
  expect_refused(le64(100'000'001) + "{}", {"header length 100000001 (the u64 at offset 0) is over the limit"});
  expect_refused(le64(UINT64_MAX) + "{}", {"header length 18446744073709551615"});
}

TEST(SafetensorsRefusal, HeaderPastTheEnd) {
  expect_refused(le64(100) + "{}", {"truncated: the header of 100 bytes (length at offset 0)", "10-byte file"});
  expect_refused(le64(100'000'000) + "{}", {"truncated"});
}

TEST(SafetensorsRefusal, EmptyOrNotAnObjectHeader) {
  expect_refused(le64(0), {"empty header (header length 0 at offset 0)"});
  expect_refused(file_of("[]"), {"does not start with '{' (byte 0x5b at offset 8)"});  // valid JSON, not an object
  expect_refused(file_of(" {}"), {"does not start with '{' (byte 0x20 at offset 8)"});
  expect_refused(file_of(std::string("\0{}", 3)), {"byte 0x00 at offset 8"});
}

TEST(SafetensorsRefusal, InvalidJsonNamesTheOffset) {
  // `{"a":` then the end: the parser stops at byte 5 of the header, file offset 13.
  expect_refused(file_of(R"({"a":)"), {"not valid JSON at byte 5 of the header (file offset 13)"});
  expect_refused(file_of(R"({"a":1}x)"), {"not valid JSON at byte 7 of the header (file offset 15)",
                                          "last read: '1}x'"});
  // nlohmann alone would stop at a NUL byte and ignore the rest: refused wherever it is.
  expect_refused(file_of(std::string("{}\n\0", 4)), {"a NUL byte at file offset 11"});
  expect_refused(file_of(std::string("{}\0garbage", 10)), {"a NUL byte at file offset 10"});
  expect_refused(file_of(std::string("{\"a\0\":1}", 8)), {"a NUL byte at file offset 11"});
  expect_refused(file_of("{\"\xff\":1}"), {"not valid JSON", "file offset 10"});  // not UTF-8
}

TEST(SafetensorsRefusal, DuplicateKeysAtAnyLevel) {
  const std::string a = f32_entry("a", "[1]", 0, 4);
  expect_refused(file_of("{" + a + "," + a + "}", "xxxx"), {"the tensor name 'a' appears twice"});
  expect_refused(file_of(R"({"a":{"dtype":"F32","dtype":"F32","shape":[1],"data_offsets":[0,4]}})", "xxxx"),
                 {"the key 'dtype' appears twice in the header's entry 'a'"});
  expect_refused(file_of(R"({"__metadata__":{"k":"1","k":"2"}})"),
                 {"the key 'k' appears twice in the header's entry '__metadata__'"});
  expect_refused(file_of(R"({"__metadata__":{},"__metadata__":{}})"), {"the key '__metadata__' appears twice"});
  // Deeper: the object inside an array inside a tensor's entry still names the tensor.
  expect_refused(file_of(R"({"t":{"shape":[{"x":1,"x":2}]}})"),
                 {"the key 'x' appears twice in the header's entry 't'"});
}

TEST(SafetensorsRefusal, MetadataMustBeAnObjectOfStrings) {
  expect_refused(file_of(R"({"__metadata__":["pt"]})"), {"__metadata__ is a JSON array, not an object of strings"});
  expect_refused(file_of(R"({"__metadata__":null})"), {"__metadata__ is a JSON null"});
  expect_refused(file_of(R"({"__metadata__":{"format":"pt","step":12}})"),
                 {"__metadata__ entry 'step' is a JSON number, not a string"});
}

// ---- Refusals: a tensor's entry --------------------------------------------------------------------------------

TEST(SafetensorsRefusal, EntryMustBeAnObjectWithExactlyTheThreeKeys) {
  expect_refused(file_of(R"({"a":[1]})"), {"tensor 'a': its header entry is a JSON array, not an object"});
  expect_refused(file_of(R"({"a":{"dtype":"F32","shape":[1]}})", "xxxx"), {"tensor 'a': no \"data_offsets\""});
  expect_refused(file_of(R"({"a":{"shape":[1],"data_offsets":[0,4]}})", "xxxx"), {"tensor 'a': no \"dtype\""});
  expect_refused(file_of(R"({"a":{"dtype":"F32","data_offsets":[0,4]}})", "xxxx"), {"tensor 'a': no \"shape\""});
  expect_refused(file_of(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4],"strides":[1]}})", "xxxx"),
                 {"tensor 'a': unknown key 'strides'"});
  expect_refused(file_of(R"({"":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})", "xxxx"),
                 {"a tensor has an empty name"});
}

TEST(SafetensorsRefusal, Dtype) {
  expect_refused(file_of(R"({"a":{"dtype":4,"shape":[1],"data_offsets":[0,4]}})", "xxxx"),
                 {"tensor 'a': dtype is 4, not a string"});
  expect_refused(file_of(R"({"a":{"dtype":"F128","shape":[1],"data_offsets":[0,4]}})", "xxxx"),
                 {"tensor 'a': unknown dtype 'F128'"});
  expect_refused(file_of(R"({"a":{"dtype":"F8_E5M2","shape":[1],"data_offsets":[0,1]}})", "x"),
                 {"tensor 'a': dtype 'F8_E5M2' is not supported"});
}

TEST(SafetensorsRefusal, Shape) {
  const auto entry = [](const std::string& shape) {
    return file_of(R"({"s":{"dtype":"U8","shape":)" + shape + R"(,"data_offsets":[0,1]}})", "x");
  };
  expect_refused(entry("3"), {"tensor 's': shape is 3, not an array"});
  expect_refused(entry(R"({"0":1})"), {"tensor 's': shape is a JSON object, not an array"});
  expect_refused(entry("[1,-1]"), {"tensor 's': shape[1] is -1, not a non-negative integer that fits int64"});
  expect_refused(entry("[1.0]"), {"tensor 's': shape[0] is 1.0"});
  expect_refused(entry("[9223372036854775808]"), {"tensor 's': shape[0] is 9223372036854775808"});
  expect_refused(entry("[\"1\"]"), {"tensor 's': shape[0] is a JSON string"});
}

TEST(SafetensorsRefusal, DataOffsets) {
  const auto entry = [](const std::string& offsets) {
    return file_of(R"({"o":{"dtype":"U8","shape":[1],"data_offsets":)" + offsets + "}}", "x");
  };
  expect_refused(entry("[0]"), {"tensor 'o': data_offsets is an array of 1 elements, not [begin, end]"});
  expect_refused(entry("[0,1,2]"), {"tensor 'o': data_offsets is an array of 3 elements"});
  expect_refused(entry("\"0,1\""), {"tensor 'o': data_offsets is a JSON string"});
  expect_refused(entry("[-1,0]"), {"tensor 'o': data_offsets[0] is -1, not a non-negative integer"});
  expect_refused(entry("[0,1.5]"), {"tensor 'o': data_offsets[1] is 1.5"});
  expect_refused(entry("[1,0]"), {"tensor 'o': data_offsets [1, 0] begin after they end"});
}

TEST(SafetensorsRefusal, SizeMustMatchTheShape) {
  expect_refused(file_of("{" + f32_entry("w", "[2, 3]", 0, 20) + "}", std::string(20, 'x')),
                 {"tensor 'w': shape [2, 3] of F32 needs 24 bytes, data_offsets [0, 20] hold 20"});
  // 2^62 * 2^2 elements of 4 bytes: the product passes 2^64, even though a later dimension is 0.
  expect_refused(file_of("{" + f32_entry("w", "[4611686018427387904, 4, 0]", 0, 0) + "}"),
                 {"tensor 'w': shape [4611686018427387904, 4, 0] of F32 overflows 2^64 bytes"});
  expect_refused(file_of("{" + f32_entry("w", "[4611686018427387904]", 0, 0) + "}"), {"overflows 2^64 bytes"});
  // As in the reference, the element size multiplies the element count: 2^63 x 0 elements of 4 bytes are 0 bytes.
  EXPECT_TRUE(ddpm::parse_safetensors(file_of("{" + f32_entry("w", "[9223372036854775807, 0]", 0, 0) + "}"), kPath)
                  .find("w") != nullptr);
}

// ---- Refusals: the data buffer ---------------------------------------------------------------------------------

TEST(SafetensorsRefusal, RangesMustTileTheBuffer) {
  const std::string a = f32_entry("a", "[1]", 0, 4);
  // The header below is 49 + n bytes: data starts at file offset 8 + header size.
  {
    const std::string header = "{" + f32_entry("a", "[1]", 4, 8) + "}";
    const std::string at = std::to_string(8 + header.size());
    expect_refused(file_of(header, "xxxxyyyy"),
                   {"tensor 'a': data_offsets [4, 8] start at file offset " + std::to_string(8 + header.size() + 4),
                    "the data buffer starts at file offset " + at, "a gap of 4 bytes"});
  }
  {
    const std::string header = "{" + a + "," + f32_entry("b", "[1]", 6, 10) + "}";
    expect_refused(file_of(header, std::string(10, 'x')),
                   {"tensor 'b': data_offsets [6, 10] start at file offset " + std::to_string(8 + header.size() + 6),
                    "tensor 'a' ends at file offset " + std::to_string(8 + header.size() + 4), "a gap of 2 bytes"});
  }
  {
    const std::string header = "{" + a + "," + f32_entry("b", "[1]", 2, 6) + "}";
    expect_refused(file_of(header, std::string(6, 'x')),
                   {"tensor 'b': data_offsets [2, 6] overlap tensor 'a' [0, 4] at file offset " +
                    std::to_string(8 + header.size() + 2)});
  }
  {
    // Two tensors with the same range: an overlap too.
    const std::string header = "{" + a + "," + f32_entry("b", "[1]", 0, 4) + "}";
    expect_refused(file_of(header, "xxxx"), {"tensor 'b': data_offsets [0, 4] overlap tensor 'a'"});
  }
}

TEST(SafetensorsRefusal, RangePastTheEndOfTheFile) {
  const std::string header = "{" + f32_entry("a", "[1]", 0, 4) + "," + f32_entry("b", "[2]", 4, 12) + "}";
  const uint64_t data_offset = 8 + header.size();
  expect_refused(file_of(header, std::string(10, 'x')),
                 {"tensor 'b': data_offsets [4, 12] end at file offset " + std::to_string(data_offset + 12),
                  "outside the " + std::to_string(data_offset + 10) + "-byte file"});
  // Offsets near 2^64: the message shows the sum's terms rather than a wrapped-around offset.
  const std::string huge =
      R"({"h":{"dtype":"U8","shape":[1],"data_offsets":[18446744073709551614,18446744073709551615]}})";
  expect_refused(file_of(huge, "x"), {"tensor 'h'", "end at file offset " + std::to_string(8 + huge.size()) +
                                                        " + 18446744073709551615"});
}

TEST(SafetensorsRefusal, TrailingBytes) {
  const std::string header = "{" + f32_entry("a", "[1]", 0, 4) + "}";
  const uint64_t data_offset = 8 + header.size();
  expect_refused(file_of(header, "xxxx\n\n"),
                 {"2 trailing bytes from file offset " + std::to_string(data_offset + 4),
                  std::to_string(data_offset + 6) + "-byte file"});
  expect_refused(file_of("{}", "x"), {"1 trailing bytes from file offset 10"});
  // A tensor's data cut short of its shape: the offsets say 4 bytes, the file holds 2.
  expect_refused(file_of(header, "xx"), {"tensor 'a': data_offsets [0, 4] end at file offset"});
}

// Names from the file are printed with their odd bytes escaped.
TEST(SafetensorsRefusal, NamesArePrintable) {
  expect_refused(file_of(R"({"a\u0001'b":[]})"), {"tensor 'a\\x01\\x27b': its header entry is a JSON array"});
}

// ---- encode_safetensors's refusals -----------------------------------------------------------------------------

TEST(SafetensorsEncode, RefusesBadInputsNamingTheTensor) {
  const auto encode_error = [](const std::vector<ddpm::SafetensorsInput>& inputs,
                               const std::map<std::string, std::string>& metadata = {}) {
    return error_of([&] { ddpm::encode_safetensors(inputs, metadata); });
  };
  EXPECT_TRUE(has_all(encode_error({{"w", "F32", {1}, "abcd"}, {"w", "F32", {1}, "abcd"}}),
                      {"tensor 'w' appears twice"}));
  EXPECT_TRUE(has_all(encode_error({{"w", "F33", {1}, "abcd"}}), {"tensor 'w'", "dtype 'F33'"}));
  EXPECT_TRUE(has_all(encode_error({{"w", "F8_E4M3", {1}, "a"}}), {"tensor 'w'", "dtype 'F8_E4M3'"}));
  EXPECT_TRUE(has_all(encode_error({{"w", "F32", {2, -1}, ""}}),
                      {"tensor 'w'", "negative dimension in shape [2, -1]"}));
  EXPECT_TRUE(has_all(encode_error({{"w", "F32", {2}, "abcd"}}),
                      {"tensor 'w'", "shape [2] of F32 needs 8 bytes, the data holds 4"}));
  EXPECT_TRUE(has_all(encode_error({{"w", "U8", {int64_t{1} << 62, 8}, ""}}), {"tensor 'w'", "overflows"}));
  EXPECT_TRUE(has_all(encode_error({{"", "U8", {1}, "a"}}), {"empty name"}));
  EXPECT_TRUE(has_all(encode_error({{"__metadata__", "U8", {1}, "a"}}), {"tensor '__metadata__'", "reserved"}));
  EXPECT_TRUE(has_all(encode_error({{"bad\xff", "U8", {1}, "a"}}), {"tensor 'bad\\xff'", "not valid UTF-8"}));
  EXPECT_TRUE(has_all(encode_error({}, {{"k", "\xc3"}}), {"metadata key 'k'", "not valid UTF-8"}));
}

// ---- Files on disk ---------------------------------------------------------------------------------------------

class SafetensorsFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("ddpm_safetensors_test_" + std::to_string(::getpid()) + "_" +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  fs::path dir_;
};

TEST_F(SafetensorsFileTest, ReadsAWrittenFile) {
  const std::vector<ddpm::SafetensorsInput> inputs = mixed_inputs();
  const fs::path path = dir_ / "model.safetensors";
  const std::string bytes = ddpm::encode_safetensors(inputs, {{"format", "pt"}});
  std::ofstream(path, std::ios::binary).write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  const ddpm::SafetensorsFile file = ddpm::read_safetensors(path);
  EXPECT_EQ(file.path, path.string());
  EXPECT_EQ(file.metadata.at("format"), "pt");
  expect_same_tensors(file, inputs);
}

TEST_F(SafetensorsFileTest, DamagedFileNamesItsPath) {
  const fs::path path = dir_ / "cut.safetensors";
  const std::string bytes = ddpm::encode_safetensors(mixed_inputs());
  std::ofstream(path, std::ios::binary).write(bytes.data(), static_cast<std::streamsize>(bytes.size() - 1));
  EXPECT_TRUE(has_all(error_of([&] { ddpm::read_safetensors(path); }),
                      {"safetensors file " + path.string() + ": tensor ", "outside the"}));
}

TEST_F(SafetensorsFileTest, MissingFileAndDirectoryAreRefused) {
  const fs::path missing = dir_ / "absent.safetensors";
  EXPECT_TRUE(has_all(error_of([&] { ddpm::read_safetensors(missing); }),
                      {"safetensors file " + missing.string() + ": cannot open", "No such file"}));
  EXPECT_TRUE(has_all(error_of([&] { ddpm::read_safetensors(dir_); }),
                      {"safetensors file " + dir_.string() + ": cannot read: not a regular file"}));
}

}  // namespace
