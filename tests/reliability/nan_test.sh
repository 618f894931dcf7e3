#!/usr/bin/env bash
# Non-finite values injected on one rank (DDPM_FAULT) in a 2-rank CPU job: a NaN input pixel, a NaN loss, a NaN
# gradient element after the all-reduce. Every rank must skip exactly those steps: weights, EMA and optimizer
# state unchanged across them (bitwise), the replicas still equal (checked every step), the skip counted in the
# log and in every rank's Prometheus counter. Then K consecutive bad steps stop the run with a clear error,
# keeping a valid checkpoint to resume from.
# Usage: nan_test.sh DDPM COMPARE_CHECKPOINTS SOURCE_DIR
set -uo pipefail
# shellcheck source=../lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
require_args 3 "nan_test.sh DDPM COMPARE_CHECKPOINTS SOURCE_DIR" "$@"
DDPM="$1"
COMPARE="$2"
SRC="$3"
require_executables "$DDPM" "$COMPARE"
require_files "$SRC/configs/smoke.yaml"
require_commands mpirun pkill python3 curl
train() {  # train NAME STEPS [--set ...]
  local name="$1" steps="$2"
  shift 2
  mpirun --oversubscribe -np 2 "$DDPM" train --config "$SRC/configs/smoke.yaml" --progress plain --set "run.dir=$WORK/$name" \
    --set "train.steps=$steps" --set train.log_every=1 --set train.checkpoint_every=1 --set train.keep_checkpoints=100 \
    --set diffusion.timesteps=50 --set monitoring.eval_every=0 --set distributed.replica_check_every=1 "$@"
}

# 1. One bad value each at steps 3, 5 and 7, each on one rank; rank 0 and 1 pause at step 9 (a hang fault: asleep
#    outside any collective) so that their /metrics can be read.
DDPM_FAULT="nan_input@3:1,nan_loss@5:0,nan_grad@7:1,hang@9" train skips 10 >"$WORK/skips.log" 2>&1 &
job=$!
for _ in $(seq 600); do
  [[ -f "$WORK/skips/train_log.jsonl" && $(wc -l <"$WORK/skips/train_log.jsonl") -ge 8 ]] && break
  kill -0 "$job" 2>/dev/null || break
  sleep 0.1
done
sleep 0.5
counters=""
for target in $(python3 -c "import json,sys; print(' '.join(t for g in json.load(open(sys.argv[1])) for t in g['targets']))" \
                  "$WORK/skips/prometheus_targets.json" 2>/dev/null); do
  counters+="$(curl -s "http://$target/metrics" | sed -n 's/^ddpm_nonfinite_steps_total{.*} \([0-9.e+]*\)$/\1/p') "
done
kill -KILL "$job" 2>/dev/null
pkill -KILL -f -- "run.dir=$WORK/skips" 2>/dev/null
wait "$job" 2>/dev/null
if [[ "$counters" == "3 3 " ]]; then ok "ddpm_nonfinite_steps_total is 3 on both ranks"; else fail "counters on the ranks: '$counters'"; tail -n 5 "$WORK/skips.log"; fi
skipped_steps="$(sed -n 's/.*warning: step \([0-9]*\) skipped: non-finite.*/\1/p' "$WORK/skips.log" | tr '\n' ' ')"
[[ "$skipped_steps" == "3 5 7 " ]] && ok "steps 3, 5, 7 skipped, no other" || fail "skipped steps: '$skipped_steps'"
grep -q '"step":8,.*"skipped_steps":3' "$WORK/skips/train_log.jsonl" && ok "train_log.jsonl counts 3 skipped steps" ||
  fail "train_log.jsonl: $(tail -n 1 "$WORK/skips/train_log.jsonl")"
# The replicas stayed equal: the replica checks ran, and none found a difference. The trainer reports a check only
# when it fails ("replicas diverged at step N", and the run stops), so that they ran is read off what makes them run:
# the resolved config the job used (config.yaml in the run directory) checks every step; the gradients went through
# the all-reduce (communication time logged at every step: the synchronizer a check needs exists, with 2 ranks); and
# steps 1-8 were all logged. A step's check follows its log line, so the line of step N + 1 says that step N's check
# ran and passed: those of steps 1-7, the skipped steps' included.
check_every="$(awk '/^[^ ]/ { in_section = ($1 == "distributed:") } in_section && $1 == "replica_check_every:" { print $2 }' \
                 "$WORK/skips/config.yaml" 2>/dev/null)"
if [[ "$check_every" == 1 ]]; then
  ok "the job's resolved config checks the replicas every step"
else
  fail "distributed.replica_check_every in $WORK/skips/config.yaml: '$check_every', expected 1"
fi
if out="$(python3 - "$WORK/skips/train_log.jsonl" <<'PY' 2>&1
import json, sys
lines = open(sys.argv[1]).read().split("\n")[:8]  # the lines complete when the job was stopped at step 9
records = [json.loads(line) for line in lines if line]
steps = [r["step"] for r in records]
assert steps == list(range(1, 9)), f"logged steps {steps}, expected 1-8"
comm = [r["comm_total_seconds"] for r in records]
assert all(s is not None and s > 0 for s in comm), f"no gradient all-reduce logged at some step: {comm}"
print(f"steps 1-8 logged, each after an all-reduce ({min(comm) * 1e3:.2f}-{max(comm) * 1e3:.2f} ms)")
PY
)"; then
  ok "the replica checks of steps 1-7 ran: $out"
else
  fail "no evidence that the replica checks ran: $out"
fi
if grep -q "replicas diverged" "$WORK/skips.log"; then
  fail "replicas diverged: $(grep -m1 -o "replicas diverged.*" "$WORK/skips.log")"
else
  ok "replicas equal after every step (checked every step)"
fi
for bad in 3 5 7; do
  for prefix in model/ ema_ adam/; do
    if compare_ckpt "$(ckpt_path "$WORK/skips" $((bad - 1)))" "$(ckpt_path "$WORK/skips" "$bad")" --prefix "$prefix"; then
      ok "step $bad skipped: $prefix unchanged, bitwise"
    else
      fail "step $bad: $prefix changed: $COMPARE_OUT"
    fi
  done
done
# The control: a good step does change them (so the comparisons above can fail).
expect_different "a good step (8) changes the weights" "$(ckpt_path "$WORK/skips" 7)" "$(ckpt_path "$WORK/skips" 8)" \
  --prefix model/

# 2. Every step bad from step 4 on, at most 3 in a row: the run stops with a clear error naming the limit; the
#    newest checkpoint verifies and a resume without the fault finishes.
DDPM_FAULT="nan_loss@4+:1" train limit 20 --set train.max_consecutive_skips=3 >"$WORK/limit.log" 2>&1
status=$?
[[ $status -ne 0 ]] && ok "K consecutive skips: exit $status" || fail "K consecutive skips: exit 0"
if grep -q "3 consecutive steps had a non-finite loss or gradient (train.max_consecutive_skips; last: step 6); stopping with the last good checkpoint kept in $WORK/limit" "$WORK/limit.log"; then
  ok "the error names the limit, the step and the run directory"
else
  fail "no clear error"; tail -n 5 "$WORK/limit.log"
fi
newest="$(newest_ckpt "$WORK/limit")"
if [[ -z "$newest" ]]; then
  fail "no checkpoint kept in $WORK/limit"
elif compare_ckpt "$newest" "$(ckpt_path "$WORK/limit" 3)" --prefix model/; then
  ok "the newest checkpoint ($(basename "$newest")) holds the last good weights (step 3's)"
else
  fail "$newest differs from step 3's weights: $COMPARE_OUT"
fi
train limit 8 >"$WORK/resume.log" 2>&1 && grep -q "resumed at step 5 from" "$WORK/resume.log" &&
  ok "resumed from the last checkpoint and finished" || { fail "no resume"; tail -n 5 "$WORK/resume.log"; }

finish
