# Sourced by fuzz_test.sh and fuzz_long.sh: the targets and how one of them is run.
# shellcheck shell=bash
FUZZ_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$FUZZ_DIR/../.." && pwd)"
BUILD_DIR="${DDPM_FUZZ_BUILD_DIR:-$REPO_ROOT/build-fuzz}"
ARTIFACTS="$BUILD_DIR/fuzz-artifacts"  # crashing inputs are kept here

# target, -max_len (bytes; above the largest seed), fewest executions a 20 s run may do (far below the slowest
# rate measured on a loaded 2-core machine: fewer means the target is broken, e.g. rejects everything at once)
FUZZ_TARGETS=(
  "fuzz_config 4096 2000"
  "fuzz_idx 8192 20000"
  "fuzz_cifar10 8192 20000"
  "fuzz_image 4096 500"
  "fuzz_checkpoint_header 8192 20000"
  "fuzz_npz 8192 20000"
  "fuzz_safetensors 8192 20000"
)

# run_target TARGET MAX_LEN CORPUS_DIR LOG [libFuzzer flags...]: runs the target on CORPUS_DIR (which it grows);
# sets RUN_RC, RUN_EXECS, RUN_RATE, RUN_SECONDS.
run_target() {
  local target=$1 max_len=$2 corpus=$3 log=$4
  shift 4
  mkdir -p "$ARTIFACTS"
  local start=$SECONDS
  RUN_RC=0
  "$BUILD_DIR/tests/fuzz/$target" -max_len="$max_len" -timeout=30 -rss_limit_mb=2048 -print_final_stats=1 \
    -artifact_prefix="$ARTIFACTS/$target-" "$@" "$corpus" >"$log" 2>&1 || RUN_RC=$?
  RUN_SECONDS=$((SECONDS - start))
  RUN_EXECS=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
  RUN_RATE=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n 1)
  RUN_EXECS=${RUN_EXECS:-0}
  RUN_RATE=${RUN_RATE:-0}
}

# The reason a failed run stopped, from its log.
failure_summary() {
  grep -E "ERROR: |runtime error:|fuzz check failed|unexpected exception|SUMMARY:|Test unit written|^rejected" "$1" |
    head -n 12 || true
}
