// libFuzzer target: the safetensors reader (parse_safetensors, which read_safetensors runs on a file's bytes), and
// the writer on what it accepts. Input: the file. Each input is parsed twice: as it is, and with its length field
// set to the rest of the input (all of it the header, no data buffer), so that a mutation that changes the JSON's
// length still reaches the JSON parser and the entry checks instead of stopping at "truncated" or "trailing bytes".
// An accepted file must be consistent (each range inside the buffer, the size its shape and dtype need, the
// ranges tiling the buffer), and encode_safetensors must re-encode its tensors into a file that parses back to the
// same names, dtypes, shapes, bytes and metadata, and that encodes again to the same bytes.
#include <cstddef>
#include <cstdint>
#include <exception>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "tests/fuzz/fuzz_check.h"
#include "trainer/checkpoint/safetensors.h"

namespace {

const std::string kName = "fuzz/input.safetensors";

void check_consistent(const ddpm::SafetensorsFile& file) {
  FUZZ_CHECK(file.data_offset >= 8 && file.data_offset <= file.bytes.size(), "data offset %llu in a %zu-byte file",
             static_cast<unsigned long long>(file.data_offset), file.bytes.size());
  const uint64_t buffer = file.bytes.size() - file.data_offset;
  uint64_t covered = 0;
  std::set<std::string> names;
  for (const ddpm::SafetensorsTensor& t : file.tensors) {
    const char* name = t.name.c_str();
    FUZZ_CHECK(!t.name.empty() && t.name != ddpm::kSafetensorsMetadataKey, "tensor name '%s'", name);
    FUZZ_CHECK(names.insert(t.name).second, "'%s' listed twice", name);
    FUZZ_CHECK(file.find(t.name) == &t, "find('%s') gives another tensor", name);
    FUZZ_CHECK(t.begin == covered && t.end >= t.begin && t.end <= buffer,
               "'%s' at [%llu, %llu) after %llu bytes of a %llu-byte buffer", name,
               static_cast<unsigned long long>(t.begin), static_cast<unsigned long long>(t.end),
               static_cast<unsigned long long>(covered), static_cast<unsigned long long>(buffer));
    // The reader refuses any overflow, as the reference does: the dimensions' product, then the element size.
    uint64_t elements = 1;
    for (const int64_t dim : t.shape) {
      FUZZ_CHECK(dim >= 0, "a negative dimension in '%s'", name);
      FUZZ_CHECK(!__builtin_mul_overflow(elements, static_cast<uint64_t>(dim), &elements),
                 "the element count of '%s' overflows", name);
    }
    uint64_t bytes = 0;
    FUZZ_CHECK(!__builtin_mul_overflow(elements, ddpm::safetensors_element_size(t.dtype), &bytes),
               "the size of '%s' overflows", name);
    FUZZ_CHECK(bytes == t.end - t.begin, "'%s' holds %llu bytes, its shape needs %llu", name,
               static_cast<unsigned long long>(t.end - t.begin), static_cast<unsigned long long>(bytes));
    covered = t.end;
  }
  FUZZ_CHECK(covered == buffer, "the tensors cover %llu of the %llu-byte buffer",
             static_cast<unsigned long long>(covered), static_cast<unsigned long long>(buffer));
}

std::vector<ddpm::SafetensorsInput> inputs_of(const ddpm::SafetensorsFile& file) {
  std::vector<ddpm::SafetensorsInput> inputs;
  for (const ddpm::SafetensorsTensor& t : file.tensors) {
    inputs.push_back({t.name, t.dtype, t.shape, std::string(file.data(t), t.end - t.begin)});
  }
  return inputs;
}

// What the reader accepts, the writer writes, and the reader reads back the same; the writer's output is canonical.
void check_round_trip(const ddpm::SafetensorsFile& file) {
  try {
    const std::vector<ddpm::SafetensorsInput> inputs = inputs_of(file);
    const std::string encoded = ddpm::encode_safetensors(inputs, file.metadata);
    const ddpm::SafetensorsFile again = ddpm::parse_safetensors(encoded, kName);
    FUZZ_CHECK(again.data_offset % ddpm::kSafetensorsAlignment == 0, "data offset %llu is not aligned",
               static_cast<unsigned long long>(again.data_offset));
    FUZZ_CHECK(again.metadata == file.metadata, "the metadata reads back different");
    FUZZ_CHECK(again.tensors.size() == inputs.size(), "%zu tensors written, %zu read back", inputs.size(),
               again.tensors.size());
    for (const ddpm::SafetensorsInput& input : inputs) {
      const ddpm::SafetensorsTensor* t = again.find(input.name);
      FUZZ_CHECK(t != nullptr, "'%s' was not read back", input.name.c_str());
      FUZZ_CHECK(t->dtype == input.dtype && t->shape == input.shape &&
                     std::string(again.data(*t), t->end - t->begin) == input.data,
                 "'%s' reads back different", input.name.c_str());
    }
    FUZZ_CHECK(ddpm::encode_safetensors(inputs_of(again), again.metadata) == encoded, "re-encoding changes the bytes");
  } catch (const std::exception& e) {
    ddpm_fuzz::unexpected_exception((std::string("round trip: ") + e.what()).c_str());
  }
}

void parse(const std::string& bytes) {
  ddpm::SafetensorsFile file;
  try {
    file = ddpm::parse_safetensors(bytes, kName);
  } catch (const ddpm::SafetensorsError& e) {
    ddpm_fuzz::expect_clear_message(e, kName);
    return;
  } catch (const std::exception& e) {
    ddpm_fuzz::unexpected_exception(e.what());
  } catch (...) {
    ddpm_fuzz::unexpected_exception("(not a std::exception)");
  }
  // Past here every exception is a bug: an accepted file's dtypes are known and its tensors can be written.
  try {
    FUZZ_CHECK(file.bytes == bytes && file.path == kName, "the file's bytes or path changed");
    check_consistent(file);
  } catch (const std::exception& e) {
    ddpm_fuzz::unexpected_exception((std::string("consistency: ") + e.what()).c_str());
  }
  check_round_trip(file);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string bytes(reinterpret_cast<const char*>(data), size);
  parse(bytes);
  if (bytes.size() >= 8) {
    const uint64_t length = bytes.size() - 8;
    for (size_t i = 0; i < 8; ++i) bytes[i] = static_cast<char>((length >> (8 * i)) & 0xff);
    if (bytes != std::string(reinterpret_cast<const char*>(data), size)) parse(bytes);
  }
  return 0;
}
