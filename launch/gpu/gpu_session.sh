#!/usr/bin/env bash
# Everything the GPU machine is for, in one or two commands, since a task drawn for it gets minutes of device time:
#   1. unpack the Debian packages carried in .cache/gpu/debs into a prefix (dpkg -x, not into /);
#   2. build ddpm there against the machine's LibTorch (python3's torch) and NCCL (its nvidia-nccl wheel), unless
#      .cache/gpu/bin holds binaries prepare_gpu_session.sh built here from the same source (a content hash of the
#      C++ and CMake files) against the same torch version, that run;
#   3. the checks only a GPU can run (launch/gpu/gpu_check.sh);
#   4. the benchmark against the PyTorch peer (launch/bench/bench.sh gpu), with profiles of ours and the peer's steps.
# Here first: bash launch/gpu/prepare_gpu_session.sh. Then with the device tool, carry [".cache/gpu"], timeout_s 600,
# in two commands on the same warm machine (one command may run 10 minutes; the whole takes about that):
#   "GPU_SESSION_PART=1 bash launch/gpu/gpu_session.sh"   steps 1-3 and ddpm's benchmark rows
#   "GPU_SESSION_PART=2 bash launch/gpu/gpu_session.sh"   the peer's rows (torch.compile's compilation is most of
#                                                         it), added to part 1's, and the whole table
# (GPU_SESSION_PART=all, the default, does both in one.) Part 1 keeps its reports in .cache/gpu-results, which
# stays on the machine between commands; where part 2 runs on a fresh machine, copy part 1's
# bench_results.jsonl there first: put at .cache/gpu/bench_results.jsonl, it travels with .cache/gpu (and wins
# over a file kept on the machine). A part 2 run again replaces the peer's rows, it does not add them twice.
# What it prints goes to $OUT/gpu_session.log as well, the benchmark's reports to $OUT/bench_results.jsonl (row
# by row, so a command stopped at its limit still returns the rows done), the profiled steps of ddpm's shipped
# config as a Chrome trace to $OUT/trace_ddpm.json.gz.
#   GPU_SESSION_PREFIX  where the packages are unpacked (default /tmp/ddpm-prefix)
#   GPU_SESSION_BUILD   build folder (default build-gpu)
#   GPU_SESSION_DRY=1   steps 1 and 2 only (prepare_gpu_session.sh runs it here, to check the relocated build
#                       and to make .cache/gpu/bin: GPU_SESSION_EXPORT names that folder)
#   GPU_SESSION_BUILD_ANYWAY=1  build even when .cache/gpu/bin would do
#   GPU_SESSION_CHECK_LIMIT  seconds the checks may take before they are stopped (default 240)
set -euo pipefail
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
CARRIED="$REPO_ROOT/.cache/gpu"
PREFIX="${GPU_SESSION_PREFIX:-/tmp/ddpm-prefix}"
BUILD="${GPU_SESSION_BUILD:-$REPO_ROOT/build-gpu}"
OUT="${OUT:-$REPO_ROOT/gpu-session-out}"
mkdir -p "$OUT"
exec > >(tee -a "$OUT/gpu_session.log") 2>&1
started=$SECONDS
say() { echo "[gpu_session +$((SECONDS - started))s] $*"; }

[[ -d "$CARRIED/debs" ]] || { echo "gpu_session: no $CARRIED/debs: run launch/gpu/prepare_gpu_session.sh here and carry .cache/gpu" >&2; exit 1; }
say "unpacking $(ls "$CARRIED"/debs/*.deb | wc -l) packages into $PREFIX"
mkdir -p "$PREFIX"
for deb in "$CARRIED"/debs/*.deb; do dpkg -x "$deb" "$PREFIX"; done
LIB="$PREFIX/usr/lib/x86_64-linux-gnu"
# Open MPI relocated: OPAL_PREFIX tells it where its files are now.
export OPAL_PREFIX="$PREFIX/usr" PATH="$PREFIX/usr/bin:$PATH" LD_LIBRARY_PATH="$LIB:${LD_LIBRARY_PATH:-}"
export MPIRUN="$PREFIX/usr/bin/mpirun.openmpi"
PYTHON="${PYTHON:-python3}"
TORCH_PREFIX="$("$PYTHON" -c 'import torch; print(torch.utils.cmake_prefix_path)')"
# NCCL from the machine's nvidia-nccl wheel (the one torch loads), else the CUDA toolkit's.
read -r NCCL_INCLUDE NCCL_LIB < <("$PYTHON" - <<'PY'
import glob, os
try:
    import nvidia.nccl
    root = list(nvidia.nccl.__path__)[0]
    libs = sorted(glob.glob(os.path.join(root, "lib", "libnccl.so*")))
    print(os.path.join(root, "include"), libs[0] if libs else "-")
except ImportError:
    print("- -")
PY
)
nccl_args=()
[[ "$NCCL_INCLUDE" != - && -f "$NCCL_INCLUDE/nccl.h" ]] && nccl_args=(-DNCCL_INCLUDE_DIR="$NCCL_INCLUDE" -DNCCL_LIBRARY="$NCCL_LIB")
[[ "$NCCL_LIB" != - ]] && export LD_LIBRARY_PATH="$(dirname "$NCCL_LIB"):$LD_LIBRARY_PATH"

# The machine's LibTorch first: binaries built elsewhere find it through the path, not their RUNPATH.
TORCH_VERSION="$("$PYTHON" -c 'import torch; print(torch.__version__)')"
export LD_LIBRARY_PATH="$("$PYTHON" -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))'):$LD_LIBRARY_PATH"
PREBUILT="$CARRIED/bin"
source_hash() {  # what the binaries are built from: every C++ and CMake file of the checkout, by content
  (cd "$REPO_ROOT" && find CMakeLists.txt data distributed trainer tests \( -name '*.cpp' -o -name '*.h' -o -name 'CMakeLists.txt' \) \
    -type f | LC_ALL=C sort | xargs sha256sum | sha256sum | cut -c1-16)
}
SOURCE_HASH="$(source_hash)"
if [[ "${GPU_SESSION_BUILD_ANYWAY:-0}" != 1 && -x "$PREBUILT/ddpm" && "$(cat "$PREBUILT/TORCH_VERSION" 2>/dev/null)" == "$TORCH_VERSION" &&
      "$(cat "$PREBUILT/SOURCE_HASH" 2>/dev/null)" == "$SOURCE_HASH" ]] && "$PREBUILT/ddpm" --version >/dev/null 2>&1; then
  # Built by prepare_gpu_session.sh from this very source against the same torch version: no build minutes here.
  say "using the binaries built by prepare_gpu_session.sh ($PREBUILT, torch $TORCH_VERSION, source $SOURCE_HASH)"
  export DDPM="$PREBUILT/ddpm" COMPARE="$PREBUILT/compare_checkpoints"
else
  if [[ -x "$PREBUILT/ddpm" ]]; then
    say "not using $PREBUILT: built from source $(cat "$PREBUILT/SOURCE_HASH" 2>/dev/null || echo unknown) with torch" \
      "$(cat "$PREBUILT/TORCH_VERSION" 2>/dev/null || echo unknown); this is source $SOURCE_HASH with torch $TORCH_VERSION"
  fi
  say "configuring $BUILD (torch $TORCH_VERSION: $TORCH_PREFIX; NCCL: ${NCCL_LIB})"
  cmake -S "$REPO_ROOT" -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release \
    -DCMAKE_PREFIX_PATH="$TORCH_PREFIX;$PREFIX/usr;$LIB/cmake" \
    -DMPI_CXX_COMPILER="$PREFIX/usr/bin/mpicxx.openmpi" -DSTB_LIBRARY="$LIB/libstb.so" \
    -DCMAKE_CXX_FLAGS="-isystem $PREFIX/usr/include" "${nccl_args[@]}" >"$OUT/cmake.log" 2>&1 ||
    { tail -40 "$OUT/cmake.log"; exit 1; }
  say "building ddpm and compare_checkpoints ($(nproc) jobs)"
  cmake --build "$BUILD" --target ddpm compare_checkpoints -- -j"$(nproc)" | { grep -v '^\[' || true; }
  export DDPM="$BUILD/ddpm" COMPARE="$BUILD/tests/compare_checkpoints"
fi
"$DDPM" --version
if [[ "${GPU_SESSION_DRY:-0}" == 1 && -n "${GPU_SESSION_EXPORT:-}" ]]; then
  mkdir -p "$GPU_SESSION_EXPORT"
  cp "$DDPM" "$COMPARE" "$GPU_SESSION_EXPORT/"
  echo "$TORCH_VERSION" >"$GPU_SESSION_EXPORT/TORCH_VERSION"
  echo "$SOURCE_HASH" >"$GPU_SESSION_EXPORT/SOURCE_HASH"
  say "binaries for the GPU machine in $GPU_SESSION_EXPORT (torch $TORCH_VERSION, source $SOURCE_HASH)"
fi
if [[ "${GPU_SESSION_DRY:-0}" == 1 ]]; then say "dry run: built; no GPU steps"; exit 0; fi

nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
PART="${GPU_SESSION_PART:-all}"
[[ "$PART" =~ ^(all|1|2)$ ]] || { echo "gpu_session: GPU_SESSION_PART must be all, 1 or 2, not '$PART'" >&2; exit 2; }
RESULTS="$REPO_ROOT/.cache/gpu-results"
mkdir -p "$RESULTS"
check_rc=0
if [[ "$PART" != 2 ]]; then
  say "GPU checks (launch/gpu/gpu_check.sh)"
  timeout "${GPU_SESSION_CHECK_LIMIT:-240}" bash "$REPO_ROOT/launch/gpu/gpu_check.sh" "$CARRIED/data/fashion-mnist" || check_rc=$?
  say "GPU checks: exit $check_rc"
fi
bench_part=all
[[ "$PART" == 1 ]] && bench_part=ours
saved="$RESULTS/bench_results.jsonl"  # part 1's rows, for part 2
mirror=()
if [[ "$PART" == 2 ]]; then
  bench_part=peer
  # A file copied here on purpose wins over one left on this machine; the peer's rows of an earlier part 2 go.
  from=""
  for candidate in "$CARRIED/bench_results.jsonl" "$saved"; do [[ -f "$candidate" ]] && { from="$candidate"; break; }; done
  if [[ -n "$from" ]]; then grep -v '^{"name": "diffusers' "$from" >"$OUT/bench_results.jsonl" || true
  else say "no reports of part 1 here: the table will hold the peer's rows alone"; : >"$OUT/bench_results.jsonl"
  fi
else
  : >"$saved"
  rm -f "$RESULTS/trace_ddpm.json"
  mirror=(BENCH_MIRROR="$saved")  # row by row, so part 2 has them even if this command is stopped at its limit
fi
say "benchmark (launch/bench/bench.sh gpu, BENCH_PART=$bench_part)"
trace=()
[[ "$bench_part" != peer ]] && trace=(TRACE="$RESULTS/trace_ddpm.json")
bench_rc=0
env OUT="$OUT/bench_results.jsonl" PEER_WHEELS="$CARRIED/wheels" PYTHON="$PYTHON" BENCH_PART="$bench_part" "${trace[@]}" \
  "${mirror[@]}" bash "$REPO_ROOT/launch/bench/bench.sh" gpu || bench_rc=$?
if [[ -f "$RESULTS/trace_ddpm.json" ]]; then gzip -c "$RESULTS/trace_ddpm.json" >"$OUT/trace_ddpm.json.gz"; fi
say "done (GPU checks exit $check_rc, benchmark exit $bench_rc)"
# 124 is what the device tool reads as its own time limit: checks stopped by theirs exit 3 instead.
[[ $check_rc == 124 ]] && { say "the GPU checks were stopped at their limit (GPU_SESSION_CHECK_LIMIT)"; exit 3; }
[[ $check_rc == 0 ]] || exit $check_rc
exit $bench_rc
