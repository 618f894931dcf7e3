#!/usr/bin/env bash
# kill -9 at random moments, and inside checkpoint writes: nothing but the steps since the last committed
# checkpoint may be lost, and the final parameters must equal an uninterrupted run's, bit for bit (CPU, 2 ranks).
#
# One run directory is trained towards STEPS; each trial starts the job (which resumes by itself from the run
# directory), kills it, and checks what the kill left: every committed checkpoint verifies, no process is left,
# and the next start resumes from the newest committed checkpoint. Trials alternate at random between
#   - SIGKILL of a random rank at a random moment (a random step, then a random delay inside it), and
#   - SIGKILL of rank 0 inside the write of an upcoming checkpoint (DDPM_FAULT): half of the temp file written,
#     temp file complete but not renamed, or renamed but the directory not yet synced.
# After the last trial the job runs to STEPS and its final checkpoint is compared with an uninterrupted run's.
#
# Usage: kill_test.sh DDPM COMPARE_CHECKPOINTS SOURCE_DIR [TRIALS=20] [SEED]
# SEED (an integer, 0 to 999999999; else $KILL_TEST_SEED; else 1) seeds every random choice: the kind of each trial, the
# rank, the step, the delay, the write phase. It is printed first ("kill_test: seed N"); the same TRIALS and SEED
# replay the same choices (the moments themselves still depend on the machine's timing).
set -uo pipefail
# shellcheck source=../lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
USAGE="kill_test.sh DDPM COMPARE_CHECKPOINTS SOURCE_DIR [TRIALS=20] [SEED=\$KILL_TEST_SEED or 1]"
require_args 3 "$USAGE" "$@"
DDPM="$1"
COMPARE="$2"
SRC="$3"
TRIALS="${4:-20}"
SEED="${5:-${KILL_TEST_SEED:-1}}"
[[ "$TRIALS" =~ ^[1-9][0-9]*$ ]] || harness_error "TRIALS must be a positive integer, got '$TRIALS'; usage: $USAGE"
[[ "$SEED" =~ ^[0-9]{1,9}$ ]] || harness_error "SEED must be an integer from 0 to 999999999, got '$SEED'; usage: $USAGE"
SEED=$((10#$SEED))
echo "kill_test: seed $SEED (replay: kill_test.sh DDPM COMPARE_CHECKPOINTS SOURCE_DIR $TRIALS $SEED)"
RANDOM=$SEED  # only the main shell draws: a subshell ($(...)) reseeds RANDOM by itself
require_executables "$DDPM" "$COMPARE"
require_files "$SRC/configs/smoke.yaml"
require_commands mpirun pgrep

# Each trial advances at most 3 steps past the committed checkpoint plus a checkpoint interval, so the run can
# never finish before the last trial.
CKPT_EVERY=2
STEPS=$((5 * TRIALS + 10))
train() {  # train NAME [ENV...]: the same command for every run of the test
  local name="$1"
  shift
  env "$@" mpirun --oversubscribe -np 2 "$DDPM" train --config "$SRC/configs/smoke.yaml" --progress plain \
    --set "run.dir=$WORK/$name" --set "train.steps=$STEPS" --set train.log_every=1 \
    --set "train.checkpoint_every=$CKPT_EVERY" --set train.keep_checkpoints=3 --set diffusion.timesteps=50 \
    --set monitoring.eval_every=0 --set distributed.timeout_seconds=30
}

logged_step() {  # the last step rank 0 logged in this run dir (0 before any)
  local line
  line="$(tail -n 1 "$WORK/chain/train_log.jsonl" 2>/dev/null)"
  [[ "$line" =~ \"step\":([0-9]+) ]] && echo "${BASH_REMATCH[1]}" || echo 0
}

echo "kill_test: $TRIALS trials, seed $SEED, $STEPS steps, checkpoint every $CKPT_EVERY"
start=$SECONDS
train straight >"$WORK/straight.log" 2>&1 || { fail "the uninterrupted run failed"; tail -n 5 "$WORK/straight.log"; }

phases=(kill_in_checkpoint_write kill_before_checkpoint_rename kill_before_checkpoint_dir_sync)
declare -A kinds=()
lost_steps=0
for trial in $(seq "$TRIALS"); do
  committed=$(newest_step "$WORK/chain")
  log="$WORK/trial$trial.log"
  if ((RANDOM % 2 == 0)); then
    # Inside a checkpoint write of rank 0 (the writer), one or two checkpoints ahead.
    phase=${phases[$((RANDOM % 3))]}
    at=$(((committed / CKPT_EVERY + 1 + RANDOM % 2) * CKPT_EVERY))
    what="$phase at step $at"
    kinds[$phase]=$((${kinds[$phase]:-0} + 1))
    train chain "DDPM_FAULT=$phase@$at:0" >"$log" 2>&1
    status=$?
  else
    # A random rank at a random moment: during start-up (MPI and LibTorch init, data loading, the resume), or
    # 1-3 steps into the run plus a random delay inside the step.
    rank=$((RANDOM % 2))
    steps_in=$((RANDOM % 4))
    seconds=$((steps_in == 0 ? RANDOM % 2 : 0))
    milliseconds=$((RANDOM % 1000))
    delay="$seconds.$(printf '%03d' "$milliseconds")"
    what="rank $rank, $steps_in steps into the run + ${delay} s"
    kinds[random_moment]=$((${kinds[random_moment]:-0} + 1))
    logged_before=$(wc -l <"$WORK/chain/train_log.jsonl" 2>/dev/null || echo 0)
    train chain >"$log" 2>&1 &
    job=$!
    for _ in $(seq 600); do
      (($(wc -l <"$WORK/chain/train_log.jsonl" 2>/dev/null || echo 0) - logged_before >= steps_in)) && break
      kill -0 "$job" 2>/dev/null || break
      sleep 0.05
    done
    sleep "$delay"
    pid=""
    for _ in $(seq 100); do
      pid=$(rank_pid "run.dir=$WORK/chain" "$rank" "$job") && break
      sleep 0.05
    done
    if [[ -n "$pid" ]]; then kill -KILL "$pid"; else fail "trial $trial: rank $rank not found"; fi
    wait "$job"
    status=$?
  fi
  # What the kill must leave: a dead job, no rank behind, every committed checkpoint valid.
  [[ $status -ne 0 ]] || fail "trial $trial ($what): the job exited 0 instead of being killed"
  sleep 0.3
  pgrep -f -- "run.dir=$WORK/chain" >/dev/null && fail "trial $trial ($what): processes left behind"
  for ckpt in "$WORK/chain"/ckpt-*.ddpm; do
    [[ -e "$ckpt" ]] || continue
    verify_ckpt "$ckpt" || fail "trial $trial ($what): committed $(basename "$ckpt") does not verify: $VERIFY_OUT"
  done
  # The start of this trial resumed from the checkpoint that was newest when it began (when it got that far).
  if ((committed > 0)) && grep -q "^run directory" "$log" && ! grep -q "resumed at step $committed from" "$log"; then
    fail "trial $trial ($what): did not resume from step $committed"; grep -m1 "run directory" "$log"
  fi
  reached=$(logged_step)
  after=$(newest_step "$WORK/chain")
  lost=$((reached > after ? reached - after : 0))
  lost_steps=$((lost_steps + lost))
  ((lost <= CKPT_EVERY)) || fail "trial $trial ($what): $lost steps lost, more than the checkpoint interval"
  echo "trial $trial: $what: exit $status, resumed at $committed, reached step $reached, committed $after (lost $lost)"
done

# The last start removes the interrupted writes' temp files and finishes the run.
committed=$(newest_step "$WORK/chain")
train chain >"$WORK/final.log" 2>&1 || { fail "the final resume failed"; tail -n 5 "$WORK/final.log"; }
grep -q "resumed at step $committed from" "$WORK/final.log" || fail "the final run did not resume from step $committed"
leftovers=$(find "$WORK/chain" -name '.ckpt-*.tmp' | wc -l)
((leftovers == 0)) && ok "no temp file of an interrupted write is left" || fail "$leftovers temp files left"
for prefix in model/ ema_ adam/; do
  if compare_ckpt "$(ckpt_path "$WORK/chain" "$STEPS")" "$(ckpt_path "$WORK/straight" "$STEPS")" --prefix "$prefix"; then
    ok "after $TRIALS kills, final $prefix = uninterrupted run's, bitwise ($COMPARE_OUT)"
  else
    fail "final $prefix differs from the uninterrupted run: $COMPARE_OUT"
  fi
done
summary=""
for kind in "${!kinds[@]}"; do summary+=" $kind=${kinds[$kind]}"; done
echo "kill_test: $TRIALS trials (seed $SEED):$summary; steps lost to kills in all: $lost_steps" \
  "(each at most the steps since the last checkpoint); $((SECONDS - start)) s; $failures failures"
exit_status
