#!/usr/bin/env bash
# The GPU run in one device-tool command: ddpm's CUDA and NCCL path checked and measured on the lent GPU in about
# 8 minutes, as rows written one at a time, most valuable first, so that a command stopped at any point has
# returned every row it finished.
#
#   here, once:   bash launch/gpu/prepare.sh   .cache/gpu: the Debian packages, diffusers' wheels, Fashion-MNIST's
#                                              test split, and ddpm built here against this machine's torch
#                 bash launch/gpu/dry_run.sh   this command on a copy of what travels, up to its first GPU call
#   there:        device run, command "bash launch/gpu/run.sh", carry [".cache/gpu"], timeout_s 540
#   a rerun:      device run, command "GPU_RUN_RERUN=1 GPU_RUN_LIMIT=<seconds> bash launch/gpu/run.sh": the rows
#                 that were not ok in the last run (kept on a warm machine in .cache/gpu-run; on a fresh one, put the
#                 returned results.jsonl at .cache/gpu/previous.jsonl first), the others kept as they were
#
# The budget (15 minutes of device time for an issue, every start and idle minute counted; one command at most
# 10): the machine's start (a minute or two), this command (GPU_RUN_LIMIT, 470 s, under a timeout_s of 540 that
# leaves time for the last rows' table and the copy back), then at once, while the machine is still warm (30 s), a
# rerun of what failed or did not fit, limited to what is left less a minute; then give_back.
#
# Rows, in order (each with an estimate and a cap in seconds; a phase may take up to the limit given, and the run
# stops taking rows at GPU_RUN_LIMIT):
#   machine   (30)   the GPU, driver, torch, CUDA, cuDNN, NCCL versions (launch/gpu/machine.py)
#   checks   (170)   launch/gpu/gpu_check.sh, one check a row: the smoke and CIFAR-10 models on CUDA (eager, bf16,
#                    channels-last, fused Adam), train.deterministic's bit-identical runs with the NCCL all-reduce
#                    at world size 1 against none, the CUDA graph against the eager step, --sync-check on each
#   ours     (140)   launch/bench/bench.sh gpu, a row a key: the shipped CIFAR-10 config at batch 128 (profiled,
#                    traced), the NCCL all-reduce at world size 1, the CUDA graph, then each speed option alone
#   peer     (140)   diffusers' UNet2DModel trained by a PyTorch loop: eager (profiled), then torch.compile (its
#                    compilation reported apart, as warm-up seconds)
#   sampling (110)   1000-step ancestral sampling of 256 images and our fast samplers (respaced, DDIM): ours eager
#                    and with a CUDA graph, the peer eager and compiled
# $OUT receives: run.log (everything printed), results.jsonl (a line a row, as each ends; launch/gpu/rows.sh says
# what a line holds), table.txt (launch/gpu/results_table.py: the checks, the benchmark table, the README block),
# logs.tar.gz (each row's whole output), trace_ddpm.json.gz (the shipped config's profiled steps, Chrome format).
#
# Environment: GPU_RUN_LIMIT (470), GPU_RUN_RERUN (1: only what the last run did not pass), GPU_RUN_PREFIX (where the
# packages are unpacked, /tmp/ddpm-prefix), GPU_RUN_BUILD (the build folder when the carried binaries do not do,
# build-gpu), GPU_RUN_BUILD_ANYWAY (1: build even when they do), GPU_RUN_EXPORT (with GPU_RUN_STOP=built: copy the
# binaries there; prepare.sh makes .cache/gpu/bin so), GPU_RUN_STOP (built: stop once the binaries run; first-gpu-call:
# stop after the first row that needs a GPU, which dry_run.sh expects to fail on a machine without one), PYTHON
# (the python3 with torch; default python3).
set -euo pipefail
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
CARRIED="$REPO_ROOT/.cache/gpu"
KEPT="$REPO_ROOT/.cache/gpu-run"  # stays on the machine between the commands of one lease
PREFIX="${GPU_RUN_PREFIX:-/tmp/ddpm-prefix}"
BUILD="${GPU_RUN_BUILD:-$REPO_ROOT/build-gpu}"
OUT="${OUT:-$REPO_ROOT/gpu-run-out}"
LIMIT="${GPU_RUN_LIMIT:-470}"
STOP="${GPU_RUN_STOP:-}"
PYTHON="${PYTHON:-python3}"
export PYTHON
[[ "$LIMIT" =~ ^[0-9]+$ ]] || { echo "run.sh: GPU_RUN_LIMIT must be a number of seconds, not '$LIMIT'" >&2; exit 2; }
[[ "$STOP" =~ ^(|built|first-gpu-call)$ ]] || { echo "run.sh: GPU_RUN_STOP must be built or first-gpu-call, not '$STOP'" >&2; exit 2; }
mkdir -p "$OUT" "$KEPT"
exec > >(tee -a "$OUT/run.log") 2>&1
say() { echo "[run +${SECONDS}s] $*"; }

# 1. The Debian packages ddpm links against, unpacked into a prefix (dpkg -x, never into /), once a machine.
[[ -d "$CARRIED/debs" ]] || { echo "run.sh: no $CARRIED/debs: run launch/gpu/prepare.sh here and carry .cache/gpu" >&2; exit 1; }
stamp="$PREFIX/.unpacked-$(ls "$CARRIED"/debs/*.deb | LC_ALL=C sort | sha256sum | cut -c1-16)"
if [[ ! -f "$stamp" ]]; then
  say "unpacking $(ls "$CARRIED"/debs/*.deb | wc -l) packages into $PREFIX"
  mkdir -p "$PREFIX"
  for deb in "$CARRIED"/debs/*.deb; do dpkg -x "$deb" "$PREFIX"; done
  touch "$stamp"
fi
LIB="$PREFIX/usr/lib/x86_64-linux-gnu"
# Open MPI relocated: OPAL_PREFIX tells it where its files are now.
export OPAL_PREFIX="$PREFIX/usr" PATH="$PREFIX/usr/bin:$PATH" LD_LIBRARY_PATH="$LIB:${LD_LIBRARY_PATH:-}"
export MPIRUN="$PREFIX/usr/bin/mpirun.openmpi" OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
TORCH_PREFIX="$("$PYTHON" -c 'import torch; print(torch.utils.cmake_prefix_path)')"
TORCH_VERSION="$("$PYTHON" -c 'import torch; print(torch.__version__)')"
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
# The machine's LibTorch and the CUDA libraries of its wheels (cudart, cuBLAS, cuDNN, NCCL) first: binaries built
# elsewhere find them through the path, not through their RUNPATH (which names this build's folders, and
# /usr/local/cuda, whose toolkit need not be the one torch was built with).
TORCH_LIBS="$("$PYTHON" - <<'PY'
import glob, os, torch
site = os.path.dirname(os.path.dirname(torch.__file__))
print(":".join([os.path.join(os.path.dirname(torch.__file__), "lib")] + sorted(glob.glob(os.path.join(site, "nvidia", "*", "lib")))))
PY
)"
export LD_LIBRARY_PATH="$TORCH_LIBS:$LD_LIBRARY_PATH"

# 2. The binaries: those prepare.sh built here from this very source against the same torch version when they
# run, else a build against the machine's LibTorch and NCCL (minutes of device time).
source_hash() {  # every C++ and CMake file of the checkout, by content
  (cd "$REPO_ROOT" && find CMakeLists.txt data distributed trainer tests \( -name '*.cpp' -o -name '*.h' -o -name 'CMakeLists.txt' \) \
    -type f | LC_ALL=C sort | xargs sha256sum | sha256sum | cut -c1-16)
}
SOURCE_HASH="$(source_hash)"
PREBUILT="$CARRIED/bin"
if [[ "${GPU_RUN_BUILD_ANYWAY:-0}" != 1 && -x "$PREBUILT/ddpm" && "$(cat "$PREBUILT/TORCH_VERSION" 2>/dev/null)" == "$TORCH_VERSION" &&
      "$(cat "$PREBUILT/SOURCE_HASH" 2>/dev/null)" == "$SOURCE_HASH" ]] && "$PREBUILT/ddpm" --version >/dev/null 2>&1; then
  say "the binaries prepare.sh built ($PREBUILT: torch $TORCH_VERSION, source $SOURCE_HASH)"
  export DDPM="$PREBUILT/ddpm" COMPARE="$PREBUILT/compare_checkpoints"
  BINARIES=prebuilt
else
  if [[ -x "$PREBUILT/ddpm" ]]; then
    say "not the binaries of $PREBUILT: built from source $(cat "$PREBUILT/SOURCE_HASH" 2>/dev/null || echo '?') with torch" \
      "$(cat "$PREBUILT/TORCH_VERSION" 2>/dev/null || echo '?'); this is source $SOURCE_HASH with torch $TORCH_VERSION," \
      "or they did not start ($("$PREBUILT/ddpm" --version 2>&1 | tail -n 1))"
  fi
  nccl_args=()
  [[ "$NCCL_INCLUDE" != - && -f "$NCCL_INCLUDE/nccl.h" ]] && nccl_args=(-DNCCL_INCLUDE_DIR="$NCCL_INCLUDE" -DNCCL_LIBRARY="$NCCL_LIB")
  say "configuring $BUILD (torch $TORCH_VERSION: $TORCH_PREFIX; NCCL: $NCCL_LIB)"
  cmake -S "$REPO_ROOT" -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release \
    -DCMAKE_PREFIX_PATH="$TORCH_PREFIX;$PREFIX/usr;$LIB/cmake" \
    -DMPI_CXX_COMPILER="$PREFIX/usr/bin/mpicxx.openmpi" -DSTB_LIBRARY="$LIB/libstb.so" \
    -DCMAKE_CXX_FLAGS="-isystem $PREFIX/usr/include" "${nccl_args[@]}" >"$OUT/cmake.log" 2>&1 ||
    { tail -40 "$OUT/cmake.log"; exit 1; }
  # Within the run's limit, leaving a minute for rows: a build that cannot finish in time ends the run with a
  # clear line rather than at the device tool's limit.
  build_limit=$((LIMIT - SECONDS - 60))
  ((build_limit > 0)) || build_limit=1
  say "building ddpm and compare_checkpoints ($(nproc) jobs, at most $build_limit s)"
  timeout "$build_limit" cmake --build "$BUILD" --target ddpm compare_checkpoints -- -j"$(nproc)" >"$OUT/build.log" 2>&1 ||
    { tail -30 "$OUT/build.log"; say "the build did not finish within $build_limit s (GPU_RUN_LIMIT $LIMIT): no rows run"; exit 1; }
  export DDPM="$BUILD/ddpm" COMPARE="$BUILD/tests/compare_checkpoints"
  BINARIES="built here in $((SECONDS)) s"
fi
DDPM_VERSION="$("$DDPM" --version)"
say "$DDPM_VERSION ($BINARIES)"
# A library the binaries need and the machine lacks is named now, not at the first row.
missing="$(ldd "$DDPM" "$COMPARE" | grep 'not found' | sort -u || true)"
[[ -z "$missing" ]] || { echo "run.sh: libraries missing for $DDPM:"; echo "$missing"; exit 1; }
# Beyond the C and C++ runtimes, every library should come from the prefix or the torch install: one the machine
# happens to have here may be missing on the GPU machine (dry_run.sh fails on this line).
outside="$(ldd "$DDPM" "$COMPARE" | awk '/=>/ {print $3}' | grep -v -e "^$PREFIX/" -e '/site-packages/' |
  grep -v -E '/(libc|libm|libdl|libpthread|librt|libutil|libgcc_s|libstdc\+\+|libz|ld-linux-x86-64)\.so' | sort -u | tr '\n' ' ' || true)"
[[ -z "$outside" ]] || say "libraries from the machine itself, beyond the C and C++ runtimes: $outside"
if [[ "$STOP" == built ]]; then
  if [[ -n "${GPU_RUN_EXPORT:-}" ]]; then
    mkdir -p "$GPU_RUN_EXPORT"
    cp "$DDPM" "$COMPARE" "$GPU_RUN_EXPORT/"
    echo "$TORCH_VERSION" >"$GPU_RUN_EXPORT/TORCH_VERSION"
    echo "$SOURCE_HASH" >"$GPU_RUN_EXPORT/SOURCE_HASH"
    say "binaries for the GPU machine in $GPU_RUN_EXPORT (torch $TORCH_VERSION, source $SOURCE_HASH)"
  fi
  exit 0
fi

# 3. The rows.
# shellcheck source=rows.sh
source "$REPO_ROOT/launch/gpu/rows.sh"
previous=""
if [[ "${GPU_RUN_RERUN:-0}" == 1 ]]; then
  previous="$KEPT/previous.jsonl"
  # The last run of this lease, kept on this machine, else (a fresh machine) the one carried in .cache/gpu
  # (prepare.sh removes a stale one).
  if [[ -s "$KEPT/results.jsonl" ]]; then cp "$KEPT/results.jsonl" "$previous"
  elif [[ -f "$CARRIED/previous.jsonl" ]]; then cp "$CARRIED/previous.jsonl" "$previous"
  else say "GPU_RUN_RERUN=1, but no earlier results here or in .cache/gpu/previous.jsonl: every row runs"; previous=""
  fi
fi
WORK="$KEPT/work"
mkdir -p "$WORK"
[[ -n "$previous" ]] || rm -rf "${WORK:?}"/*  # a fresh run starts from nothing; a rerun reuses the runs kept
export ROWS_MIRROR="$KEPT/results.jsonl" ROWS_LOGS="$KEPT/logs"
rm -rf "$ROWS_LOGS"
: >"$ROWS_MIRROR"
left=$((LIMIT - SECONDS))  # the set-up above counts against the limit too (a build there, most of all)
((left > 0)) || left=0
rows_begin "$OUT/results.jsonl" "$left" "$previous"
finish() {  # the table, the logs and the trace into $OUT, whatever happened above
  "$PYTHON" "$REPO_ROOT/launch/gpu/results_table.py" "$OUT/results.jsonl" >"$OUT/table.txt" 2>&1 || true
  cat "$OUT/table.txt"
  tar -czf "$OUT/logs.tar.gz" -C "$KEPT" logs 2>/dev/null || true
  if [[ -f "$WORK/trace_ddpm.json" ]]; then gzip -c "$WORK/trace_ddpm.json" >"$OUT/trace_ddpm.json.gz"; fi
}
trap finish EXIT

if [[ "$STOP" == first-gpu-call ]]; then  # dry_run.sh: the binaries and the relocated Open MPI, on the CPU first
  rows_phase dry 120
  row dry.cpu_steps 5 120 "$DDPM" bench --config "$REPO_ROOT/configs/smoke.yaml" --set run.device=cpu \
    --set "data.path=$CARRIED/data/fashion-mnist" --set data.split=test --set train.batch_size=4 --warmup 0 --steps 2
fi
rows_phase machine 30
row machine 3 30 "$PYTHON" "$REPO_ROOT/launch/gpu/machine.py" "$DDPM_VERSION" "$BINARIES"
export GPU_CHECK_DATA="$CARRIED/data/fashion-mnist" GPU_CHECK_WORK="$WORK/checks"
check() { row "check.$1" "$2" "$3" bash "$REPO_ROOT/launch/gpu/gpu_check.sh" "$1"; }  # check NAME ESTIMATE CAP
rows_phase checks 170
check smoke_plain 8 40
if [[ "$STOP" == first-gpu-call ]]; then rows_end || true; exit 0; fi
check cifar_eager 12 60
check nccl_bitwise 25 70
check smoke_graph 8 40
check cifar_graph 12 60
check sync_eager 6 30
check sync_nccl 6 30
check sync_graph 6 30
check smoke_floor 8 40
check smoke_shipped 8 40
check smoke_nccl 8 40
check sync_improved 6 30
check sync_improved_graph 6 30
check cifar_fp32 12 60
check sample_ancestral_graph 6 30
check sample_ddim_graph 6 30
check sample_ancestral 6 30
check sample_ddim 6 30

bench() {  # bench KEY ESTIMATE CAP [VAR=VALUE...]: one row of launch/bench/bench.sh gpu
  local key="$1" estimate="$2" cap="$3"
  shift 3
  row "bench.$key" "$estimate" "$cap" env OUT="$WORK/bench_$key.jsonl" PEER_WHEELS="$CARRIED/wheels" BENCH_ONLY="$key" \
    BENCH_SAMPLING=0 "$@" bash "$REPO_ROOT/launch/bench/bench.sh" gpu
}
rows_phase ours 140
bench shipped 20 60 TRACE="$WORK/trace_ddpm.json"
bench nccl1 15 45
bench graph 20 60
bench baseline 15 45
bench bf16 12 45
bench channels_last 12 45
bench fused_adam 12 45
bench cudnn_benchmark 12 45
bench shipped_cudnn_benchmark 12 45
rows_phase peer 140
bench peer_eager 25 60
bench peer_compile 90 150
rows_phase sampling 110
SAMPLING_ROW=(BENCH_PART=sampling BENCH_REPEAT=1 BENCH_SAMPLING=1)
bench sampling 20 60 "${SAMPLING_ROW[@]}"
bench sampling_graph 15 45 "${SAMPLING_ROW[@]}"
bench sampling_peer_eager 20 60 "${SAMPLING_ROW[@]}"
bench sampling_peer_compile 50 150 "${SAMPLING_ROW[@]}"
rows_end
