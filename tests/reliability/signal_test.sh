#!/usr/bin/env bash
# SIGTERM, as Slurm sends it to every task before a preemption: each rank of a 2-rank CPU job finishes its
# step, a checkpoint is committed, the job exits 0; the resumed job ends bit-identical to an uninterrupted one.
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
for pid in $(pgrep -f -- "run.dir=$WORK/stopped"); do
  tr '\0' '\n' <"/proc/$pid/environ" 2>/dev/null | grep -q '^OMPI_COMM_WORLD_RANK=' && kill -TERM "$pid"
done
wait "$job"
status=$?
if [[ $status -eq 0 ]]; then ok "SIGTERM to every rank: the job exited 0"; else fail "the job exited $status"; tail -5 "$WORK/stopped.log"; fi
step=$(sed -n 's/.*stopped on a signal after step \([0-9]*\).*/\1/p' "$WORK/stopped.log")
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
finish
