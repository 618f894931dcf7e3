#!/usr/bin/env bash
# Here, where apt and PyPI answer: gathers in .cache/gpu (git-ignored) what launch/gpu/run.sh needs on the
# GPU machine, which has python3 with torch, CMake, ninja and nvcc but no Debian -dev packages and no registries:
#   debs/     the Debian packages ddpm builds against (Open MPI and its libraries, hwloc's libudev, yaml-cpp,
#             prometheus-cpp, civetweb (its CMake files name its binary too), nlohmann-json, libstb, libpng, zlib,
#             GoogleTest), unpacked there with dpkg -x;
#   wheels/   diffusers and what it needs, for the machine's CPython 3.12 (launch/bench/fetch_peer_wheels.sh);
#   data/     Fashion-MNIST's test split (10,000 images, 4.4 MB): real data for the checks;
#   bin/      ddpm and compare_checkpoints built here the way run.sh builds there (against the prefix of
#             those packages and this machine's torch, the same version as the GPU machine's), which run.sh
#             runs instead of building when their torch version is the machine's and their source hash (bin/SOURCE_HASH) the
#             checkout's: minutes of device time saved; stale binaries are rebuilt there, never run.
#             PREPARE_PREBUILT=0 skips it (the build takes minutes here, longer on a fresh machine).
# Then bash launch/gpu/dry_run.sh, and with the device tool: carry [".cache/gpu"], command "bash launch/gpu/run.sh"
# (see there).
# Idempotent; prints the size (the device tool carries at most 64 MiB with the checkout).
set -euo pipefail
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
# shellcheck source=../env.sh
source "$REPO_ROOT/launch/env.sh"
DEST="$REPO_ROOT/.cache/gpu"
PACKAGES=(libopenmpi-dev libopenmpi3 openmpi-bin openmpi-common libhwloc15 libpmix2 libevent-core-2.1-7
          libevent-pthreads-2.1-7 libfabric1 libucx0 libpsm2-2 libpsm-infinipath1 libibverbs1 librdmacm1 libnl-3-200
          libnl-route-3-200 libyaml-cpp-dev libyaml-cpp0.7 prometheus-cpp-dev libprometheus-cpp-core1.0
          libprometheus-cpp-pull1.0 libprometheus-cpp-push1.0 libcivetweb1 libcivetweb-dev civetweb libgtest-dev
          nlohmann-json3-dev libstb-dev libstb0 libpng-dev libpng16-16 zlib1g-dev libudev1)
# What the GPU machine's Python already has (its image lists them): not carried.
MACHINE_HAS="pillow pyyaml requests huggingface-hub safetensors filelock fsspec packaging tqdm typing-extensions
             anyio certifi charset-normalizer h11 httpcore httpx idna urllib3"

mkdir -p "$DEST/debs" "$DEST/data/fashion-mnist"
# An earlier run's rows (put here for a rerun on a fresh machine) belong to the code they ran: not to this one.
rm -f "$DEST/previous.jsonl"
(cd "$DEST/debs" && apt-get download "${PACKAGES[@]}" 2>&1 | grep -v "unsandboxed" || true)
for package in "${PACKAGES[@]}"; do
  ls "$DEST/debs/${package}_"*.deb >/dev/null 2>&1 || { echo "prepare.sh: no .deb of $package" >&2; exit 1; }
done
PEER_PYTHONS=3.12 PEER_SKIP="$MACHINE_HAS" bash "$REPO_ROOT/launch/bench/fetch_peer_wheels.sh" "$DEST/wheels" >/dev/null
cp -u /usr/share/datasets/fashion-mnist/t10k-*-ubyte.gz "$DEST/data/fashion-mnist/"
if [[ "${PREPARE_PREBUILT:-1}" == 1 ]]; then
  PYTHON="${PYTHON:-${DDPM_TORCH_ENV:-$HOME/.cache/ddpm/torch-$DDPM_TORCH_VERSION}/bin/python}"
  GPU_RUN_STOP=built GPU_RUN_LIMIT=36000 GPU_RUN_BUILD_ANYWAY=1 GPU_RUN_EXPORT="$DEST/bin" GPU_RUN_BUILD="$REPO_ROOT/build-gpu" \
    GPU_RUN_PREFIX="$REPO_ROOT/.cache/gpu-prefix" PYTHON="$PYTHON" OUT="$(mktemp -d)" bash "$REPO_ROOT/launch/gpu/run.sh" | tail -n 3
fi
du -sh "$DEST" "$DEST"/*
