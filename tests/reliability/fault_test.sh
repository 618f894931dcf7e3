#!/usr/bin/env bash
# Failures of one rank in a 3-rank CPU job: a rank killed with SIGKILL, a rank stopped with SIGSTOP (alive but
# frozen), and a rank whose training loop hangs (DDPM_FAULT). Every process of the job must be gone, with a
# non-zero exit, within 60 s, the failing rank named; the newest checkpoint must verify, and the job must resume.
# Usage: fault_test.sh DDPM COMPARE_CHECKPOINTS SOURCE_DIR
set -uo pipefail
# shellcheck source=../lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
require_args 3 "fault_test.sh DDPM COMPARE_CHECKPOINTS SOURCE_DIR" "$@"
DDPM="$1"
COMPARE="$2"
SRC="$3"
require_executables "$DDPM" "$COMPARE"
require_files "$SRC/configs/smoke.yaml"
require_commands mpirun pgrep

start_job() {  # start_job NAME: a long 3-rank run in the background; sets JOB_PID
  mpirun --oversubscribe -np 3 "$DDPM" train --config "$SRC/configs/smoke.yaml" --progress plain \
    --set "run.dir=$WORK/$1" --set train.steps=100000 --set train.checkpoint_every=3 --set train.log_every=1 \
    --set diffusion.timesteps=50 --set distributed.timeout_seconds=10 >"$WORK/$1.log" 2>&1 &
  JOB_PID=$!
}

wait_for_checkpoint() {  # wait_for_checkpoint NAME: until a checkpoint exists (60 s at most)
  for _ in $(seq 600); do
    ls "$WORK/$1"/ckpt-*.ddpm >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  return 1
}

expect_job_ends() {  # expect_job_ends NAME WHAT: the job exits non-zero within 60 s, no rank left
  local start=$SECONDS status
  for _ in $(seq 600); do
    kill -0 "$JOB_PID" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$JOB_PID" 2>/dev/null; then
    fail "$2: the job still runs after 60 s"
    return 1
  fi
  wait "$JOB_PID"
  status=$?
  local elapsed=$((SECONDS - start))
  if [[ $status -eq 0 ]]; then fail "$2: the job exited 0"; else ok "$2: the job exited $status after ${elapsed} s"; fi
  sleep 0.5
  if pgrep -f -- "run.dir=$WORK/$1" >/dev/null; then fail "$2: rank processes left behind"; else ok "$2: no rank left"; fi
}

expect_resumable() {  # expect_resumable NAME: newest checkpoint verifies; a new job resumes from it and finishes
  local step newest
  step=$(newest_step "$WORK/$1")
  newest=$(ckpt_path "$WORK/$1" "$step")
  if verify_ckpt "$newest"; then ok "$1: newest checkpoint $(basename "$newest") verifies"; else fail "$1: $newest is missing or damaged: $VERIFY_OUT"; fi
  if mpirun --oversubscribe -np 3 "$DDPM" train --config "$SRC/configs/smoke.yaml" --progress plain \
      --set "run.dir=$WORK/$1" --set "train.steps=$((step + 2))" --set train.checkpoint_every=3 \
      --set diffusion.timesteps=50 --set distributed.timeout_seconds=10 >"$WORK/$1.resume.log" 2>&1 &&
     grep -q "resumed at step $step" "$WORK/$1.resume.log"; then
    ok "$1: resumed at step $step and finished"
  else
    fail "$1: no resume"; tail -n 5 "$WORK/$1.resume.log"
  fi
}

# 1. A rank dies (SIGKILL).
start_job killed
if wait_for_checkpoint killed && pid=$(rank_pid "run.dir=$WORK/killed" 1 "$JOB_PID"); then
  kill -KILL "$pid"
  expect_job_ends killed "rank 1 killed"
  if grep -q "process rank 1 with PID [0-9]* on node .* exited on signal 9" "$WORK/killed.log"; then
    ok "killed: the dead rank is named"
  else
    fail "killed: the dead rank is not named"; tail -n 8 "$WORK/killed.log"
  fi
  expect_resumable killed
else
  fail "killed: the job did not start"; tail -n 5 "$WORK/killed.log"
fi

# 2. A rank hangs (SIGSTOP): the others' watchdog aborts the job.
start_job stopped
if wait_for_checkpoint stopped && pid=$(rank_pid "run.dir=$WORK/stopped" 2 "$JOB_PID"); then
  kill -STOP "$pid"
  expect_job_ends stopped "rank 2 stopped"
  kill -KILL "$pid" 2>/dev/null
  if grep -q "has not completed after 10 s: another rank is dead or hung" "$WORK/stopped.log" &&
     grep -q "rank 2 on $(hostname) is holding up the job: it did not answer within 2.5 s (stopped, frozen, dead or unreachable); ranks 0 ($(hostname)), 1 ($(hostname)) are waiting in" "$WORK/stopped.log"; then
    ok "stopped: the watchdog names rank 2: $(grep -m1 -o 'rank 2 on .* is holding.*' "$WORK/stopped.log")"
  else
    fail "stopped: the hung rank is not named"; tail -n 8 "$WORK/stopped.log"
  fi
  expect_resumable stopped
else
  fail "stopped: the job did not start"; tail -n 5 "$WORK/stopped.log"
fi

# 3. A rank hangs outside any collective (alive, its threads answer, its training loop stuck): named as well.
DDPM_FAULT=hang@8:1 start_job hung
expect_job_ends hung "rank 1 stuck in its loop"
if grep -q "rank 1 on $(hostname) is holding up the job: working outside any collective for" "$WORK/hung.log"; then
  ok "hung: the watchdog names rank 1: $(grep -m1 -o 'rank 1 on .* is holding.*' "$WORK/hung.log")"
else
  fail "hung: rank 1 is not named"; tail -n 8 "$WORK/hung.log"
fi

finish
