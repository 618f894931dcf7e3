// safetensors files (https://github.com/huggingface/safetensors), read and written without LibTorch: the format
// in which diffusers, PyTorch and JAX exchange weights. Torch-free (the standard library and nlohmann/json only), so
// that tests/fuzz/fuzz_safetensors.cpp compiles it alone; converting to and from tensors is the caller's business.
//
// Layout: u64 little-endian N | N bytes of UTF-8 JSON | the data buffer. The JSON is an object whose keys are
// tensor names, each {"dtype": "F32", "shape": [2, 3], "data_offsets": [begin, end]} with offsets relative to the
// start of the data buffer (byte 8 + N), plus an optional "__metadata__" object of string -> string. The header
// may end in spaces, which the reference writer adds so that the data starts at a multiple of 8. Data is
// little-endian and row-major.
#pragma once
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

namespace ddpm {

class SafetensorsError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// The reference reader refuses headers longer than this (safetensors' MAX_HEADER_SIZE): a corrupt length must not
// make a reader allocate gigabytes.
inline constexpr uint64_t kSafetensorsMaxHeaderBytes = 100'000'000;
// The writer pads the header so that the data buffer starts at a multiple of this, as the reference writer does.
inline constexpr uint64_t kSafetensorsAlignment = 8;
// The header key that holds the string -> string metadata; it is never a tensor name.
inline constexpr const char* kSafetensorsMetadataKey = "__metadata__";

struct SafetensorsTensor {
  std::string name;
  std::string dtype;  // "F32", "BF16", ... as in the file
  std::vector<int64_t> shape;
  uint64_t begin = 0, end = 0;  // byte range inside the data buffer
};

struct SafetensorsFile {
  std::string path;                             // for messages
  std::map<std::string, std::string> metadata;  // __metadata__
  std::vector<SafetensorsTensor> tensors;       // sorted by begin offset (then end, then name)
  std::string bytes;                            // the whole file
  uint64_t data_offset = 0;                     // 8 + N: where the data buffer starts in bytes
  const SafetensorsTensor* find(const std::string& name) const;  // nullptr when absent
  const char* data(const SafetensorsTensor& t) const { return bytes.data() + data_offset + t.begin; }
};

// Element size of a dtype name ("F32" -> 4), throws SafetensorsError for an unknown one. BOOL, U8, I8: 1; U16, I16,
// F16, BF16: 2; U32, I32, F32: 4; U64, I64, F64: 8. The 8-bit floats (F8_E4M3, F8_E5M2) and the newer sub-byte and
// complex types are refused as unsupported: nothing in this project reads them.
size_t safetensors_element_size(const std::string& dtype);

// Validates everything on the bytes of a file; `path` names it in every message ("safetensors file <path>: ..."),
// with the tensor and the byte offset where they apply: the header length (at most kSafetensorsMaxHeaderBytes,
// inside the file, non-zero, the JSON starting with '{'); the JSON (valid, no key twice at any level, a
// "__metadata__" object of strings); each tensor (a non-empty name; exactly dtype (known), shape (non-negative
// int64s) and data_offsets ([begin, end], begin <= end); numel * element size == end - begin, overflow-checked);
// and the data buffer, which the tensors' ranges must tile exactly: no gap, no overlap, no trailing bytes.
SafetensorsFile parse_safetensors(std::string bytes, const std::string& path);

// Reads the file then parse_safetensors; a missing/unreadable file or a directory is a SafetensorsError naming it.
SafetensorsFile read_safetensors(const std::filesystem::path& path);

// What to write: name, dtype, shape, and the raw little-endian bytes (exactly numel * element size).
struct SafetensorsInput {
  std::string name;
  std::string dtype;
  std::vector<int64_t> shape;
  std::string data;
};

// The file's bytes: header with "__metadata__" (when non-empty) then tensors in name order, data in that same
// order, contiguous, header padded with spaces so that the data buffer starts at a multiple of 8. The header is
// compact JSON with the keys in the reference writer's order (dtype, shape, data_offsets). Throws SafetensorsError
// (with the tensor name) for a duplicate name, an empty name or "__metadata__", an unknown dtype, a negative dim,
// data whose size does not match the shape, a name or metadata string that is not UTF-8, or a header over
// kSafetensorsMaxHeaderBytes.
std::string encode_safetensors(const std::vector<SafetensorsInput>& tensors,
                               const std::map<std::string, std::string>& metadata = {});

}  // namespace ddpm
