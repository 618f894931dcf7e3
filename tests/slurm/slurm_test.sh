#!/usr/bin/env bash
# The Slurm launch scripts (launch/slurm/) under a real Slurm: a one-node cluster the test starts itself
# (slurm_lib.sh), jobs of 2 CPU tasks on the smoke config.
#   a. ddpm.sbatch to the end: COMPLETED, the final checkpoint (the reference, "straight" run).
#   b. plain scancel mid-run (what preemption and the time limit do): the ranks commit a checkpoint at the step they
#      were in; the same job submitted again resumes there and ends bit-identical to (a).
#   c. scancel --signal=TERM mid-run (what --signal=TERM@ does before the time limit): the ranks exit 75, the script
#      requeues the job, which resumes by itself and ends bit-identical to (a).
#   d. ddpm-mpirun.sbatch: plain scancel mid-run checkpoints (submitted again: bit-identical), and
#      scancel -b --signal=TERM (the batch shell passes it to the ranks): requeued, resumes, bit-identical.
# Each scenario prints the seconds from the signal to the job's end and the messages of the job.
# Usage: slurm_test.sh DDPM COMPARE_CHECKPOINTS SOURCE_DIR   (77: no Slurm can run here)
set -uo pipefail
# shellcheck source=../lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
# shellcheck source=slurm_lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/slurm_lib.sh"
require_args 3 "slurm_test.sh DDPM COMPARE_CHECKPOINTS SOURCE_DIR" "$@"
DDPM="$(realpath "$1")"
COMPARE="$(realpath "$2")"
SRC="$(realpath "$3")"
require_executables "$DDPM" "$COMPARE"
require_files "$SRC/configs/smoke.yaml" "$SRC/launch/slurm/ddpm.sbatch" "$SRC/launch/slurm/ddpm-mpirun.sbatch" \
  "$SRC/launch/env.sh"
require_commands awk grep sed realpath
# shellcheck source=../../launch/env.sh
source "$SRC/launch/env.sh"
export OMP_NUM_THREADS=1
STEPS=60
END_STATES='COMPLETED|FAILED|CANCELLED|TIMEOUT|NODE_FAIL|OUT_OF_MEMORY|PREEMPTED|BOOT_FAIL|DEADLINE'
SUMMARY=()
summary() { SUMMARY+=("$*"); }  # summary WORDS...: one line of the closing timings

slurm_start

submit() {  # submit NAME SCRIPT: sbatch of launch/slurm/SCRIPT for run NAME (run dir $WORK/runs/NAME); the job id
  local out
  out="$(cd "$SRC" && sl env DDPM="$DDPM" CONFIG="$SRC/configs/smoke.yaml" DDPM_RUN_DIR="$WORK/runs/$1" \
    DDPM_METRICS_SUBNET=127.0.0.1 DDPM_ARGS="--set train.steps=$STEPS --set train.log_every=1 \
--set train.checkpoint_every=1000 --set diffusion.timesteps=50 --set monitoring.eval_every=0" \
    sbatch --parsable --job-name="$1" --output="$WORK/$1.out" --nodes=1 --ntasks-per-node=2 --gpus-per-node=0 \
    --cpus-per-task=1 --time=10 "$SRC/launch/slurm/$2" 2>&1)" || harness_error "sbatch $2 failed: $out"
  [[ "${out%%;*}" =~ ^[0-9]+$ ]] || harness_error "sbatch $2 printed no job id: $out"
  echo "${out%%;*}"
}

messages() {  # messages NAME: the lines of the job's output worth showing (not the config, not every step)
  grep -E 'stopped on|resumed at|from scratch|done:|\.sbatch:|^srun: |slurmstepd|^mpirun|Exit code:' \
    "$WORK/$1.out" | sed 's/^/      | /'
}

stop_step() {  # stop_step NAME: N of the "stopped on SIGTERM (or: a signal) after step N" line of the job's output
  sed -nE 's/.*stopped on (a signal|SIG[A-Z]+) after step ([0-9]+).*/\2/p' "$WORK/$1.out" | head -n 1
}

run_to_end() {  # run_to_end NAME JOB SECONDS WHAT: waits for the job's end; ok when COMPLETED at train.steps
  local state
  wait_job "$2" "$END_STATES" "$3" || { fail "$4: job $2 still $(job_field "$2" JobState) after $3 s"; return 1; }
  state="$(job_field "$2" JobState)"
  if [[ "$state" == COMPLETED && -f "$(ckpt_path "$WORK/runs/$1" "$STEPS")" ]]; then
    ok "$4: job $2 COMPLETED, checkpoint of step $STEPS"
  else
    fail "$4: job $2 $state (exit $(job_field "$2" ExitCode)), final checkpoint: $(newest_ckpt "$WORK/runs/$1")"
    tail -n 5 "$WORK/$1.out" | sed 's/^/    /'
    return 1
  fi
}

start_and_wait() {  # start_and_wait NAME SCRIPT: submits; JOB, and LOGGED once 5 steps are in train_log.jsonl
  JOB="$(submit "$1" "$2")"
  wait_lines "$WORK/runs/$1/train_log.jsonl" 5 120 || harness_error "$1: job $JOB logged no 5 steps in 120 s" \
    "(state $(job_field "$JOB" JobState)): $(tail -n 3 "$WORK/$1.out" 2>/dev/null | tr '\n' ' ')"
  LOGGED="$(last_logged_step "$WORK/runs/$1")"
}

# check_stop NAME STEP: the checkpoint committed at the stop holds every step logged before the signal (LOGGED) and
# every step logged at all; it is before the end and reads back.
check_stop() {
  local name="$1" step="$2" last
  if [[ ! "$step" =~ ^[0-9]+$ ]]; then fail "$name: no stop step"; return 1; fi
  last="$(last_logged_step "$WORK/runs/$name")"
  if ((step >= LOGGED && step < STEPS)) && [[ "$last" == "$step" ]] && verify_ckpt "$(ckpt_path "$WORK/runs/$name" "$step")"; then
    ok "$name: checkpoint committed at step $step (step $LOGGED logged at the signal, $last the last one logged)"
  else
    fail "$name: stop step $step, $LOGGED logged at the signal, $last the last logged, checkpoint: $(newest_ckpt "$WORK/runs/$name")"
    return 1
  fi
}

check_final() {  # check_final NAME STEP: resumed at STEP; the log has each step once; final = straight's, bitwise
  local name="$1" log="$WORK/runs/$1/train_log.jsonl" prefix
  if grep -q "resumed at step $2 from" "$WORK/$name.out"; then ok "$name: resumed at step $2"; else fail "$name: did not resume at step $2"; fi
  if [[ $(wc -l <"$log") -eq $STEPS && $(grep -o '"step":[0-9]*' "$log" | sort -u | wc -l) -eq $STEPS ]]; then
    ok "$name: train_log.jsonl has each of the $STEPS steps once (none lost, none repeated)"
  else
    fail "$name: train_log.jsonl has $(wc -l <"$log") lines, $(grep -o '"step":[0-9]*' "$log" | sort -u | wc -l) distinct steps"
  fi
  for prefix in model/ ema_; do
    expect_same "$name: final $prefix = straight run's" "$(ckpt_path "$WORK/runs/$name" "$STEPS")" \
      "$(ckpt_path "$WORK/runs/straight" "$STEPS")" --prefix "$prefix"
  done
}

# ---- a. the reference run --------------------------------------------------------------------------------------
echo "== a. ddpm.sbatch, to the end"
t0="$(now)"
job="$(submit straight ddpm.sbatch)"
run_to_end straight "$job" 240 "a. straight run" || harness_error "the reference run did not complete"
summary "a. straight run (job $job): submit to COMPLETED $(elapsed "$t0") s"
messages straight

# ---- b. plain scancel, submitted again ---------------------------------------------------------------------------
echo "== b. ddpm.sbatch, plain scancel mid-run, then the same sbatch again"
start_and_wait preempted ddpm.sbatch
t0="$(now)"
sl scancel "$JOB" || harness_error "scancel $JOB"
if wait_job "$JOB" "$END_STATES" 60; then
  took="$(elapsed "$t0")"
  state="$(job_field "$JOB" JobState)"
  if [[ "$state" == CANCELLED ]]; then ok "b. job $JOB CANCELLED $took s after scancel"; else fail "b. job $JOB $state after scancel"; fi
else
  took=">60"
  fail "b. job $JOB still $(job_field "$JOB" JobState) 60 s after scancel"
fi
step="$(stop_step preempted)"
check_stop preempted "$step"
summary "b. plain scancel (job $JOB): signal at step $LOGGED, checkpoint at step $step, job ended $took s after"
job="$(submit preempted ddpm.sbatch)"
run_to_end preempted "$job" 240 "b. resubmitted" && check_final preempted "$step"
messages preempted

# ---- c. scancel --signal=TERM: exit 75, the script requeues ------------------------------------------------------
echo "== c. ddpm.sbatch, scancel --signal=TERM mid-run: requeued by the script, resumes by itself"
start_and_wait requeued ddpm.sbatch
t0="$(now)"
sl scancel --signal=TERM "$JOB" || harness_error "scancel --signal=TERM $JOB"
if wait_job "$JOB" "PENDING|$END_STATES" 60; then
  took="$(elapsed "$t0")"
  state="$(job_field "$JOB" JobState)"
  begin="$(job_field "$JOB" EligibleTime)"
  eligible=$(($(date -d "${begin/T/ }" +%s 2>/dev/null || date +%s) - $(date +%s)))
  if [[ "$state" == PENDING && "$(job_field "$JOB" Restarts)" == 1 ]]; then
    ok "c. job $JOB requeued (PENDING, Restarts=1) $took s after the signal; eligible in ${eligible} s"
  else
    fail "c. job $JOB $state (exit $(job_field "$JOB" ExitCode), Restarts=$(job_field "$JOB" Restarts)) after scancel --signal=TERM, not requeued"
  fi
else
  took=">60"
  fail "c. job $JOB still $(job_field "$JOB" JobState) 60 s after scancel --signal=TERM"
fi
step="$(stop_step requeued)"
check_stop requeued "$step"
if grep -q 'ddpm.sbatch: .*exit 75.*requeueing the job' "$WORK/requeued.out"; then
  ok "c. the script requeued the job on exit 75"
else
  fail "c. no 'requeueing' message of ddpm.sbatch"
fi
t1="$(now)"
run_to_end requeued "$JOB" 240 "c. requeued job" && check_final requeued "$step"
summary "c. scancel --signal=TERM (job $JOB): signal at step $LOGGED, checkpoint at step $step, requeued $took s after," \
  "COMPLETED $(elapsed "$t1") s later (of which ~11 s the requeue hold: cred_expire=10)"
messages requeued

# ---- d. the mpirun variant -----------------------------------------------------------------------------------------
echo "== d1. ddpm-mpirun.sbatch, plain scancel mid-run, then the same sbatch again"
start_and_wait mpirun_preempted ddpm-mpirun.sbatch
t0="$(now)"
sl scancel "$JOB" || harness_error "scancel $JOB"
if wait_job "$JOB" "$END_STATES" 90; then
  took="$(elapsed "$t0")"
  state="$(job_field "$JOB" JobState)"
  if [[ "$state" == CANCELLED ]]; then ok "d1. job $JOB CANCELLED $took s after scancel"; else fail "d1. job $JOB $state after scancel"; fi
else
  took=">90"
  fail "d1. job $JOB still $(job_field "$JOB" JobState) 90 s after scancel"
fi
# mpirun stops forwarding the ranks' output once it is signaled: the stop step is the newest checkpoint's.
step="$(newest_step "$WORK/runs/mpirun_preempted")"
printed="$(stop_step mpirun_preempted)"
printed="${printed:+printed, step $printed}"
check_stop mpirun_preempted "$step"
summary "d1. mpirun, plain scancel (job $JOB): signal at step $LOGGED, checkpoint at step $step" \
  "(the \"stopped on\" line: ${printed:-lost, mpirun stopped forwarding output}), job ended $took s after"
job="$(submit mpirun_preempted ddpm-mpirun.sbatch)"
run_to_end mpirun_preempted "$job" 240 "d1. resubmitted" && check_final mpirun_preempted "$step"
messages mpirun_preempted

echo "== d2. ddpm-mpirun.sbatch, scancel -b --signal=TERM mid-run: the shell signals the ranks; requeued, resumes"
start_and_wait mpirun_requeued ddpm-mpirun.sbatch
t0="$(now)"
sl scancel --batch --signal=TERM "$JOB" || harness_error "scancel -b --signal=TERM $JOB"
if wait_job "$JOB" "PENDING|$END_STATES" 90; then
  took="$(elapsed "$t0")"
  state="$(job_field "$JOB" JobState)"
  if [[ "$state" == PENDING && "$(job_field "$JOB" Restarts)" == 1 ]]; then
    ok "d2. job $JOB requeued (PENDING, Restarts=1) $took s after the signal"
  else
    fail "d2. job $JOB $state (exit $(job_field "$JOB" ExitCode)) after scancel -b --signal=TERM, not requeued"
  fi
else
  took=">90"
  fail "d2. job $JOB still $(job_field "$JOB" JobState) 90 s after scancel -b --signal=TERM"
fi
step="$(stop_step mpirun_requeued)"
step="${step:-$(newest_step "$WORK/runs/mpirun_requeued")}"
check_stop mpirun_requeued "$step"
t1="$(now)"
run_to_end mpirun_requeued "$JOB" 240 "d2. requeued job" && check_final mpirun_requeued "$step"
summary "d2. mpirun, scancel -b --signal=TERM (job $JOB): signal at step $LOGGED, checkpoint at step $step," \
  "requeued $took s after (mpirun returns 2 x odls_base_sigkill_timeout after the first rank exits), COMPLETED $(elapsed "$t1") s later"
messages mpirun_requeued

echo "== timings"
printf '  %s\n' "${SUMMARY[@]}"
finish
