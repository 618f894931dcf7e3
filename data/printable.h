// Bytes read from a file as they can be printed in a message: a corrupt or fuzzed file holds any bytes. Header-only
// and torch-free, for every reader (data/npz.cpp, trainer/checkpoint/safetensors.cpp) and the fuzz targets.
#pragma once
#include <cstdio>
#include <string>

namespace ddpm {

// Printable ASCII stays; every other byte, the backslash and `also_escaped` become \xNN.
inline std::string printable_bytes(const std::string& raw, char also_escaped = '\\') {
  std::string out;
  for (const char c : raw) {
    const auto byte = static_cast<unsigned char>(c);
    if (byte >= 0x20 && byte < 0x7f && c != '\\' && c != also_escaped) {
      out += c;
    } else {
      char text[8];
      std::snprintf(text, sizeof text, "\\x%02x", byte);
      out += text;
    }
  }
  return out;
}

}  // namespace ddpm
