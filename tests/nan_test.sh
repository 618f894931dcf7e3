#!/usr/bin/env bash
# Non-finite values injected on one rank (DDPM_FAULT) in a 2-rank CPU job: a NaN input pixel, a NaN loss, a NaN
# gradient element after the all-reduce. Every rank must skip exactly those steps: weights, EMA and optimizer
# state unchanged across them (bitwise), the replicas still equal (checked every step), the skip counted in the
# log and in every rank's Prometheus counter. Then K consecutive bad steps stop the run with a clear error,
# keeping a valid checkpoint to resume from.
# Usage: nan_test.sh DDPM COMPARE_CHECKPOINTS SOURCE_DIR
set -uo pipefail
DDPM="$1"
COMPARE="$2"
SRC="$3"
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
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
skipped="$(sed -n 's/.*warning: step \([0-9]*\) skipped: non-finite.*/\1/p' "$WORK/skips.log" | tr '\n' ' ')"
[[ "$skipped" == "3 5 7 " ]] && ok "steps 3, 5, 7 skipped, no other" || fail "skipped steps: '$skipped'"
grep -q '"step":8,.*"skipped_steps":3' "$WORK/skips/train_log.jsonl" && ok "train_log.jsonl counts 3 skipped steps" ||
  fail "train_log.jsonl: $(tail -n 1 "$WORK/skips/train_log.jsonl")"
grep -q "replicas diverged" "$WORK/skips.log" && fail "replicas diverged" || ok "replicas equal after every step (checked every step)"
for bad in 3 5 7; do
  for prefix in model/ ema_ adam/; do
    if out="$("$COMPARE" "$(ckpt_path "$WORK/skips" $((bad - 1)))" "$(ckpt_path "$WORK/skips" "$bad")" --prefix "$prefix")"; then
      ok "step $bad skipped: $prefix unchanged, bitwise"
    else
      fail "step $bad: $prefix changed: $out"
    fi
  done
done
# The control: a good step does change them (so the comparisons above can fail).
"$COMPARE" "$(ckpt_path "$WORK/skips" 7)" "$(ckpt_path "$WORK/skips" 8)" --prefix model/ >/dev/null &&
  fail "step 8 left the weights unchanged" || ok "a good step (8) changes the weights"

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
newest="$(ls "$WORK/limit"/ckpt-*.ddpm | sort | tail -n 1)"
"$COMPARE" "$newest" "$(ckpt_path "$WORK/limit" 3)" --prefix model/ >/dev/null &&
  ok "the newest checkpoint ($(basename "$newest")) holds the last good weights (step 3's)" || fail "$newest differs from step 3's weights"
train limit 8 >"$WORK/resume.log" 2>&1 && grep -q "resumed at step 5 from" "$WORK/resume.log" &&
  ok "resumed from the last checkpoint and finished" || { fail "no resume"; tail -n 5 "$WORK/resume.log"; }

finish
