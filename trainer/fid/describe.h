// How the library names arrays in its messages: shapes as "[N, D]", npy dtypes as numpy spells them ("float64").
#pragma once
#include <c10/util/ArrayRef.h>

#include <cstdint>
#include <string>
#include <vector>

#include "data/npz.h"

namespace ddpm {

inline std::string shape_text(c10::IntArrayRef sizes) {
  std::string text = "[";
  for (size_t i = 0; i < sizes.size(); ++i) text += (i ? ", " : "") + std::to_string(sizes[i]);
  return text + "]";
}
inline std::string shape_text(const std::vector<int64_t>& shape) { return shape_text(c10::IntArrayRef(shape)); }

inline const char* npy_dtype_name(NpyDtype dtype) {
  switch (dtype) {
    case NpyDtype::kUint8: return "uint8";
    case NpyDtype::kFloat32: return "float32";
    case NpyDtype::kFloat64: return "float64";
  }
  return "an unknown dtype";
}

}  // namespace ddpm
