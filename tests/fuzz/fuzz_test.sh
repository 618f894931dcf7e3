#!/usr/bin/env bash
# The short fuzz run of the test suite (ctest: fuzz_short): builds build-fuzz when needed, then runs each target
# for DDPM_FUZZ_SECONDS (default 20) on a copy of its seed corpus, one after the other. Fails on any crash,
# sanitizer report, leak, timeout or out-of-memory, and on a target that ran suspiciously few inputs.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/fuzz_lib.sh"
seconds="${DDPM_FUZZ_SECONDS:-20}"

if ! command -v "${DDPM_FUZZ_CXX:-clang++}" >/dev/null ||
   ! ls /usr/lib/llvm-*/lib/clang/*/lib/linux/libclang_rt.fuzzer-x86_64.a >/dev/null 2>&1; then
  echo "fuzz_test: skipped: clang++ or its libFuzzer runtime is missing (apt-get install clang libclang-rt-14-dev)"
  exit 77
fi
bash "$FUZZ_DIR/build.sh"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
failed=0
printf '%-24s %12s %10s %6s  %s\n' target executions exec/s wall result
for entry in "${FUZZ_TARGETS[@]}"; do
  read -r target max_len min_runs <<<"$entry"
  cp -r "$FUZZ_DIR/corpus/$target" "$work/$target"
  run_target "$target" "$max_len" "$work/$target" "$work/$target.log" -max_total_time="$seconds"
  # The threshold is for 20 s; scale it to the time asked for.
  min_runs=$((min_runs * seconds / 20))
  result=ok
  if [[ $RUN_RC -ne 0 ]]; then
    result="FAILED (exit $RUN_RC)"
  elif [[ $RUN_EXECS -lt $min_runs ]]; then
    result="FAILED (fewer than $min_runs executions)"
  fi
  printf '%-24s %12s %10s %5ss  %s\n' "$target" "$RUN_EXECS" "$RUN_RATE" "$RUN_SECONDS" "$result"
  if [[ $result != ok ]]; then
    failed=1
    failure_summary "$work/$target.log" | sed 's/^/    /'
    cp "$work/$target.log" "$ARTIFACTS/$target.log"
    echo "    full log: $ARTIFACTS/$target.log; reproduce: $BUILD_DIR/tests/fuzz/$target <crash file>"
  fi
done
exit $failed
