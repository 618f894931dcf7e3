// Precompiled header shared by every ddpm target (see ddpm_target() in the top CMakeLists.txt).
// Only heavy, stable third-party headers belong here; project headers would defeat the cache.
#pragma once
#include <torch/torch.h>

#include <algorithm>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>
