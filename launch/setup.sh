#!/usr/bin/env bash
# Sets up a machine for ddpm and builds it. Idempotent: a second run with nothing to do takes seconds.
#
#   DDPM_TORCH_ENV    virtual environment holding the torch wheel (LibTorch). Default:
#                     ${XDG_CACHE_HOME:-~/.cache}/ddpm/torch-$DDPM_TORCH_VERSION (env.sh), outside the clone, so
#                     that every clone on the machine shares the several GB of the wheel and its CUDA libraries.
#   Torch_DIR         use an official LibTorch download instead (…/libtorch/share/cmake/Torch); no venv then.
#   DDPM_BUILD_DIR    build folder (default: build)       DDPM_BUILD_TYPE  Release (default) | Debug | RelWithDebInfo
#   DDPM_CMAKE_ARGS   extra CMake arguments, e.g. "-DDDPM_CUDA=OFF"
#   DDPM_SKIP_APT=1   do not touch system packages (no root, or they are known to be there)
#   DDPM_BUILD_FUZZ=1 also build the libFuzzer targets (clang, build-fuzz/; the ctest fuzz_short builds them anyway)
# The pinned versions (DDPM_TORCH_VERSION, DDPM_DIFFUSERS_VERSION, the FID tools') come from launch/env.sh.
set -euo pipefail

readonly REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=env.sh
source "$REPO_ROOT/launch/env.sh"
readonly TORCH_VERSION="$DDPM_TORCH_VERSION"
readonly TORCH_ENV="${DDPM_TORCH_ENV:-${XDG_CACHE_HOME:-$HOME/.cache}/ddpm/torch-${TORCH_VERSION}}"
readonly BUILD_DIR="${DDPM_BUILD_DIR:-$REPO_ROOT/build}"
readonly BUILD_TYPE="${DDPM_BUILD_TYPE:-Release}"

# Debian packages: toolchain, MPI, YAML, Prometheus (client library and the server the monitoring test
# starts), GoogleTest, image/compression libraries, the default data set, procps (pgrep and pkill for the
# fault-injection tests), Slurm and munge (tests/slurm starts a real one), iproute2 and util-linux (network and UTS
# namespaces as hosts: tests/multihost), and clang with its libFuzzer and sanitizer runtimes plus llvm-symbolizer for
# the fuzz targets (tests/fuzz).
readonly APT_PACKAGES=(
  build-essential cmake ninja-build ccache git python3 python3-venv clang libclang-rt-14-dev llvm
  libopenmpi-dev openmpi-bin libyaml-cpp-dev prometheus-cpp-dev libgtest-dev libcli11-dev
  zlib1g-dev libpng-dev libstb-dev nlohmann-json3-dev prometheus curl dataset-fashion-mnist procps
  slurm-wlm munge iproute2 util-linux
)

log() { printf '[setup] %s\n' "$*" >&2; }

install_apt_packages() {
  [[ "${DDPM_SKIP_APT:-0}" == 1 ]] && return 0
  local missing=()
  for pkg in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  [[ ${#missing[@]} -eq 0 ]] && return 0
  log "installing Debian packages: ${missing[*]}"
  local sudo=""
  [[ $(id -u) -ne 0 ]] && sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

torch_prefix() {
  "$TORCH_ENV/bin/python" -c 'import torch; print(torch.utils.cmake_prefix_path)' 2>/dev/null
}

install_torch() {
  [[ -n "${Torch_DIR:-}" ]] && return 0
  # Read the installed version from the file rather than importing torch (seconds saved on every run).
  local version_file
  version_file=$(ls "$TORCH_ENV"/lib/python3*/site-packages/torch/version.py 2>/dev/null | head -n 1 || true)
  if [[ -n "$version_file" ]] && grep -q "^__version__ = '${TORCH_VERSION}" "$version_file"; then
    return 0
  fi
  log "installing torch==${TORCH_VERSION} (LibTorch) into $TORCH_ENV (several GB, once per machine)"
  mkdir -p "$(dirname "$TORCH_ENV")"
  python3 -m venv "$TORCH_ENV"
  "$TORCH_ENV/bin/pip" install -q --upgrade pip >/dev/null
  "$TORCH_ENV/bin/pip" install -q "torch==${TORCH_VERSION}" numpy
}

# diffusers for launch/bench/peer_bench.py, the PyTorch peer of `launch/bench/bench.sh` (pinned in env.sh: the
# same version as launch/bench/fetch_peer_wheels.sh carries to the GPU machine). Optional: a failure only warns.
install_diffusers() {
  [[ -n "${Torch_DIR:-}" ]] && return 0
  local version="$DDPM_DIFFUSERS_VERSION"
  ls "$TORCH_ENV"/lib/python3*/site-packages/diffusers-"$version".dist-info >/dev/null 2>&1 && return 0
  log "installing diffusers==$version into $TORCH_ENV (for launch/bench/peer_bench.py)"
  "$TORCH_ENV/bin/pip" install -q "diffusers==$version" || log "warning: diffusers not installed"
}

# pytorch-fid, scipy and torchvision for launch/fid/export_inception.py and the FID tests (tests/fid compare ddpm's
# statistics and distance with theirs; pinned in env.sh). torch is passed as a constraint so that pip never replaces
# the pinned wheel. Optional: a failure only warns (the tests that need them then skip).
install_fid_tools() {
  [[ -n "${Torch_DIR:-}" ]] && return 0
  local site
  site=$(ls -d "$TORCH_ENV"/lib/python3*/site-packages 2>/dev/null | head -n 1 || true)
  if [[ -n "$site" && -d "$site/pytorch_fid-$DDPM_PYTORCH_FID_VERSION.dist-info" && -d "$site/scipy-$DDPM_SCIPY_VERSION.dist-info" &&
        -d "$site/torchvision-$DDPM_TORCHVISION_VERSION.dist-info" ]]; then
    return 0
  fi
  log "installing pytorch-fid==$DDPM_PYTORCH_FID_VERSION, scipy==$DDPM_SCIPY_VERSION, torchvision==$DDPM_TORCHVISION_VERSION into $TORCH_ENV (for FID)"
  local constraints
  constraints="$(mktemp)"
  echo "torch==$TORCH_VERSION" >"$constraints"
  "$TORCH_ENV/bin/pip" install -q -c "$constraints" "pytorch-fid==$DDPM_PYTORCH_FID_VERSION" \
    "scipy==$DDPM_SCIPY_VERSION" "torchvision==$DDPM_TORCHVISION_VERSION" || log "warning: the FID tools (pytorch-fid, scipy, torchvision) not installed"
  rm -f "$constraints"
}

configure_and_build() {
  if [[ ! -f "$BUILD_DIR/CMakeCache.txt" ]]; then
    local prefix_args=()
    if [[ -n "${Torch_DIR:-}" ]]; then
      prefix_args=(-DTorch_DIR="$Torch_DIR")
    else
      prefix_args=(-DCMAKE_PREFIX_PATH="$(torch_prefix)")
    fi
    log "configuring $BUILD_DIR ($BUILD_TYPE)"
    # shellcheck disable=SC2086
    cmake -S "$REPO_ROOT" -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE="$BUILD_TYPE" "${prefix_args[@]}" \
      ${DDPM_CMAKE_ARGS:-} >/dev/null
  fi
  # Only the compiler's messages, not ninja's progress lines; a failed build fails the set-up (pipefail).
  cmake --build "$BUILD_DIR" -- -j"$(nproc)" | { grep -v '^\[' || true; }
}

build_fuzz_targets() {
  [[ "${DDPM_BUILD_FUZZ:-0}" == 1 ]] || return 0
  log "building the fuzz targets (tests/fuzz/build.sh)"
  DDPM_FUZZ_JOBS="${DDPM_FUZZ_JOBS:-$(nproc)}" bash "$REPO_ROOT/tests/fuzz/build.sh"
}

install_apt_packages
install_torch
install_diffusers
install_fid_tools
configure_and_build
build_fuzz_targets
log "ready: $BUILD_DIR/ddpm"
