#!/usr/bin/env bash
# The long fuzz run: each target for DDPM_FUZZ_RUNS executions (default 10 000 000), one after the other, on a
# corpus kept in build-fuzz/fuzz-corpus/<target> (seeded from tests/fuzz/corpus, grown by every run). Prints
# each target's executions, exec/s and wall time. DDPM_FUZZ_MAX_SECONDS caps each target's time (0: no cap);
# DDPM_FUZZ_ONLY="fuzz_idx fuzz_cifar10" runs only those. Run it niced on a shared machine:
#   nice -n 19 bash tests/fuzz/fuzz_long.sh
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/fuzz_lib.sh"
# No allocation stacks in the long run: a third more executions a second, and ASan's stack depot stops growing
# (a 600,000-execution run of fuzz_config reached 1 GB). A finding's input is still saved; run the target on it
# with the default ASAN_OPTIONS to see the stacks.
export ASAN_OPTIONS="${ASAN_OPTIONS:-malloc_context_size=0}"
runs="${DDPM_FUZZ_RUNS:-10000000}"
max_seconds="${DDPM_FUZZ_MAX_SECONDS:-0}"

bash "$FUZZ_DIR/build.sh"
failed=0
summary=()
for entry in "${FUZZ_TARGETS[@]}"; do
  read -r target max_len _ <<<"$entry"
  if [[ -n "${DDPM_FUZZ_ONLY:-}" && " $DDPM_FUZZ_ONLY " != *" $target "* ]]; then continue; fi
  corpus="$BUILD_DIR/fuzz-corpus/$target"
  mkdir -p "$corpus"
  for seed in "$FUZZ_DIR/corpus/$target"/*; do
    [[ -e "$corpus/$(basename "$seed")" ]] || cp "$seed" "$corpus/"
  done
  log="$BUILD_DIR/fuzz-long-$target.log"
  echo "[fuzz_long] $target: $runs executions$([[ $max_seconds != 0 ]] && echo ", at most ${max_seconds}s") (log: $log)"
  run_target "$target" "$max_len" "$corpus" "$log" -runs="$runs" -max_total_time="$max_seconds"
  result=ok
  if [[ $RUN_RC -ne 0 ]]; then
    result="FAILED (exit $RUN_RC)"
    failed=1
    failure_summary "$log" | sed 's/^/    /'
  elif [[ $RUN_EXECS -lt $runs ]]; then
    result="stopped by the time cap"
  fi
  summary+=("$(printf '%-24s %12s %10s %7ss  %s' "$target" "$RUN_EXECS" "$RUN_RATE" "$RUN_SECONDS" "$result")")
  echo "${summary[-1]}"
done
echo
printf '%-24s %12s %10s %8s  %s\n' target executions exec/s wall result
printf '%s\n' "${summary[@]}"
exit $failed
