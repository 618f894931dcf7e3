#!/usr/bin/env bash
# SIGTERM, as Slurm sends it to every task before a preemption (twice: slurmstepd and mpirun may both deliver it): each
# rank of a 2-rank CPU job finishes its step, a checkpoint is committed, the job exits 75 (stopped, resumable); the
# resumed job ends bit-identical to an uninterrupted one. A stop during the periodic bound evaluation, during
# `ddpm sample` and during `ddpm eval` is honoured within seconds, and sample/eval then write nothing.
# Usage: signal_test.sh DDPM COMPARE_CHECKPOINTS SOURCE_DIR
set -uo pipefail
# shellcheck source=../lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
require_args 3 "signal_test.sh DDPM COMPARE_CHECKPOINTS SOURCE_DIR" "$@"
DDPM="$1"
COMPARE="$2"
SRC="$3"
require_executables "$DDPM" "$COMPARE"
require_files "$SRC/configs/smoke.yaml"
require_commands mpirun pgrep
STEPS=40
train() {  # train NAME: the same command for every run of the test
  mpirun --oversubscribe -np 2 "$DDPM" train --config "$SRC/configs/smoke.yaml" --progress plain --set "run.dir=$WORK/$1" \
    --set "train.steps=$STEPS" --set train.log_every=1 --set train.checkpoint_every=1000 --set diffusion.timesteps=50 \
    --set monitoring.eval_every=0
}

train straight >"$WORK/straight.log" 2>&1 || fail "uninterrupted run"

train stopped >"$WORK/stopped.log" 2>&1 &
job=$!
for _ in $(seq 600); do
  [[ -f "$WORK/stopped/train_log.jsonl" ]] && [[ $(wc -l <"$WORK/stopped/train_log.jsonl") -ge 5 ]] && break
  sleep 0.1
done
signal_ranks() {  # signal_ranks PATTERN: SIGTERM to every rank process whose command line matches
  local pid
  for pid in $(pgrep -f -- "$1"); do
    tr '\0' '\n' <"/proc/$pid/environ" 2>/dev/null | grep -q '^OMPI_COMM_WORLD_RANK=' && kill -TERM "$pid"
  done
}
signal_ranks "run.dir=$WORK/stopped"
sleep 0.2
signal_ranks "run.dir=$WORK/stopped"  # the same request again: must not cut the checkpoint short
wait "$job"
status=$?
if [[ $status -eq 75 ]]; then ok "SIGTERM twice to every rank: the job exited 75"; else fail "the job exited $status"; tail -5 "$WORK/stopped.log"; fi
step=$(sed -n 's/.*stopped on SIGTERM after step \([0-9]*\).*/\1/p' "$WORK/stopped.log")
if [[ "$step" =~ ^[0-9]+$ && $step -lt $STEPS && -f "$(ckpt_path "$WORK/stopped" "$step")" ]]; then
  ok "a checkpoint was committed at step $step"
else
  fail "no checkpoint at the stop (step '$step')"; tail -5 "$WORK/stopped.log"
fi

train stopped >"$WORK/resumed.log" 2>&1 || fail "resume"
grep -q "resumed at step $step" "$WORK/resumed.log" && ok "resumed at step $step" || fail "did not resume at step $step"
for prefix in model/ ema_; do
  if compare_ckpt "$(ckpt_path "$WORK/stopped" "$STEPS")" "$(ckpt_path "$WORK/straight" "$STEPS")" --prefix "$prefix"; then
    ok "stopped + resumed = uninterrupted, bitwise ($COMPARE_OUT)"
  else
    fail "resumed run differs: $COMPARE_OUT"
  fi
done

# A stop during the periodic full-bound evaluation (T = 1000 terms for each of 64 images: minutes on this box): the
# evaluation is abandoned within a model call, the checkpoint of its step committed, exit 75.
long_eval() {  # long_eval NAME EXTRA...: a run whose evaluation after step 4 takes minutes
  local name="$1"
  shift
  mpirun --oversubscribe -np 2 "$DDPM" train --config "$SRC/configs/smoke.yaml" --progress plain --set "run.dir=$WORK/$name" \
    --set train.steps=8 --set train.log_every=1 --set train.checkpoint_every=1000 --set diffusion.timesteps=1000 \
    --set monitoring.eval_every=4 --set monitoring.eval_images=64 "$@"
}
long_eval evalstop >"$WORK/evalstop.log" 2>&1 &
job=$!
for _ in $(seq 1200); do
  [[ -f "$WORK/evalstop/train_log.jsonl" ]] && [[ $(wc -l <"$WORK/evalstop/train_log.jsonl") -ge 4 ]] && break
  sleep 0.1
done
sleep 1  # well inside the evaluation
signal_ranks "run.dir=$WORK/evalstop"
signalled=$SECONDS
wait "$job"
status=$?
elapsed=$((SECONDS - signalled))
if [[ $status -eq 75 && $elapsed -le 15 ]]; then
  ok "SIGTERM during the bound evaluation: exit 75 after ${elapsed} s"
else
  fail "SIGTERM during the bound evaluation: exit $status after ${elapsed} s (expected 75 within 15 s)"; tail -5 "$WORK/evalstop.log"
fi
if grep -q "ddpm: the bound evaluation of step 4 stopped on a signal; not reported" "$WORK/evalstop.log" &&
   grep -q "stopped on SIGTERM after step 4: checkpoint committed" "$WORK/evalstop.log" && verify_ckpt "$(ckpt_path "$WORK/evalstop" 4)"; then
  ok "the evaluation was abandoned and step 4's checkpoint committed"
else
  fail "no abandoned evaluation / checkpoint of step 4"; tail -5 "$WORK/evalstop.log"
fi

# ddpm sample (one process) and ddpm eval (2 ranks) stopped on SIGTERM: exit 75 within seconds, no output written
# (sampling keeps only its work folder of finished shards, here none: tests/cli/sample_test.sh resumes one).
"$DDPM" sample --config "$SRC/configs/smoke.yaml" --set "run.dir=$WORK/evalstop" --set diffusion.timesteps=1000 \
  --num-images 64 --output "$WORK/samples.png" --individual-dir "$WORK/samples" >"$WORK/sample.log" 2>&1 &
job=$!
for _ in $(seq 300); do grep -q "^sampling 64 images" "$WORK/sample.log" && break; sleep 0.1; done
sleep 1
kill -TERM "$job"
signalled=$SECONDS
wait "$job"
status=$?
elapsed=$((SECONDS - signalled))
leftovers=$(find "$WORK" -maxdepth 1 -name 'samples*' ! -name 'samples.png.shards' | wc -l)
if [[ $status -eq 75 && $elapsed -le 10 && $leftovers -eq 0 ]] &&
  grep -q "ddpm: sampling stopped on SIGTERM: 0 of 1 shards done, kept in $WORK/samples.png.shards" "$WORK/sample.log"; then
  ok "SIGTERM during ddpm sample: exit 75 after ${elapsed} s, no file written"
else
  fail "SIGTERM during ddpm sample: exit $status after ${elapsed} s, $leftovers file(s) named samples*"; tail -3 "$WORK/sample.log"
fi
mpirun --oversubscribe -np 2 "$DDPM" eval --config "$SRC/configs/smoke.yaml" --set "run.dir=$WORK/evalstop" \
  --set diffusion.timesteps=1000 --num-images 64 --output "$WORK/bound.json" >"$WORK/eval.log" 2>&1 &
job=$!
for _ in $(seq 300); do grep -q "^evaluating the full bound" "$WORK/eval.log" && break; sleep 0.1; done
sleep 1
signal_ranks "run.dir=$WORK/evalstop"
signalled=$SECONDS
wait "$job"
status=$?
elapsed=$((SECONDS - signalled))
if [[ $status -eq 75 && $elapsed -le 10 && ! -e "$WORK/bound.json" ]] &&
   grep -q "ddpm: the bound evaluation stopped on SIGTERM: nothing written" "$WORK/eval.log"; then
  ok "SIGTERM during ddpm eval on 2 ranks: exit 75 after ${elapsed} s, no report written"
else
  fail "SIGTERM during ddpm eval: exit $status after ${elapsed} s"; ls "$WORK"; tail -3 "$WORK/eval.log"
fi
finish
