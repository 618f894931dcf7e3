#!/usr/bin/env bash
# Configures (once) and builds the libFuzzer targets with clang in their own folder. Idempotent; ccache is used
# when installed (the top CMakeLists.txt sets it as the compiler launcher).
#   DDPM_FUZZ_BUILD_DIR  build folder (default: build-fuzz at the repository root)
#   DDPM_FUZZ_JOBS       parallel compile jobs (default: 1; the machine is usually shared with other work)
set -euo pipefail
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
BUILD_DIR="${DDPM_FUZZ_BUILD_DIR:-$REPO_ROOT/build-fuzz}"
if [[ ! -f "$BUILD_DIR/CMakeCache.txt" ]]; then
  generator=()
  command -v ninja >/dev/null && generator=(-G Ninja)
  cmake -S "$REPO_ROOT" -B "$BUILD_DIR" "${generator[@]}" -DDDPM_FUZZ=ON -DCMAKE_BUILD_TYPE=Debug \
    -DCMAKE_CXX_COMPILER="${DDPM_FUZZ_CXX:-clang++}" >/dev/null
fi
cmake --build "$BUILD_DIR" -j "${DDPM_FUZZ_JOBS:-1}" | { grep -v '^\[' || true; }
