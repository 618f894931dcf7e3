// The precision the model runs in: float32, or bf16 autocast around the model with float32 master weights (the
// loss, the diffusion constants, Adam and the EMA stay float32). Torch-free: the config includes it.
#pragma once
#include <utility>

namespace ddpm {

enum class Precision { kFp32, kBf16 };
inline constexpr std::pair<Precision, const char*> kPrecisionNames[] = {{Precision::kFp32, "fp32"},
                                                                         {Precision::kBf16, "bf16"}};

}  // namespace ddpm
