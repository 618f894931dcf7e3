#!/usr/bin/env bash
# srun direct launch (--mpi=pmix) across two Slurm nodes, simulated: each node a host of tests/multihost/hosts.sh
# (a network namespace behind a switch namespace, its own host name and address) running its own slurmd; munged
# and slurmctld on node 0 (slurm_lib.sh: slurm_multinode_start). One rank per node.
#   a. 6 steps across the nodes under srun: exit 0, each rank local rank 0 on its own node, the final checkpoint.
#   b. node 1 cut off (its switch port down) after a checkpoint, srun running on node 0: srun ends non-zero and the
#      ranks (and ddpm's abort fallback) end on every node within distributed.timeout_seconds + GRACE, slurmstepd of
#      node 0 as well; rank 1 on mhost1 named in srun's output. slurmstepd of the node cut off stays while its link
#      is down: Slurm retries its step-complete message to slurmctld forever (a 60 s sleep between tries; no setting
#      bounds it); with the link back up it must end within RECONNECT_LIMIT s. Then no process but the daemons is
#      left on any node (ip netns pids).
#   c. the same with each task's output in a file of its node's slurmstepd (srun --output): rank 1, cut off, names
#      rank 0 on mhost0 from its side, and ends by itself (ddpm's watchdog and abort fallback).
# Network: only the addresses of the namespaces made here (10.231.0.0/24 inside them) and loopback.
# Skipped (77) where namespaces or Slurm cannot be had (no root, no slurm-wlm/munge).
# Usage: slurm_multinode_test.sh DDPM COMPARE_CHECKPOINTS SOURCE_DIR
set -uo pipefail
# shellcheck source=../lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
# shellcheck source=slurm_lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/slurm_lib.sh"
# shellcheck source=../multihost/hosts.sh
source "$(dirname "${BASH_SOURCE[0]}")/../multihost/hosts.sh"
require_args 3 "slurm_multinode_test.sh DDPM COMPARE_CHECKPOINTS SOURCE_DIR" "$@"
DDPM="$(realpath "$1")"
COMPARE="$(realpath "$2")"
SRC="$(realpath "$3")"
require_executables "$DDPM" "$COMPARE"
require_files "$SRC/configs/smoke.yaml"
require_commands awk grep sed realpath
export OMP_NUM_THREADS=1
TIMEOUT=10          # distributed.timeout_seconds
# What the end may take beyond TIMEOUT, on every node (measured: srun 9.2-9.9 s, the ranks 7.5-8 s beyond it):
#   node 0: rank 0's watchdog fires at TIMEOUT, asks the other ranks (2.5 s), MPI_Abort; slurmstepd kills rank 0 and
#   srun waits KillWait + 2 = 7 s for the task of node 1, which never reports: ~TIMEOUT + 9.5 s. ddpm's abort
#   fallback (sh) ends 5 s after MPI_Abort. node 1: rank 1's own watchdog, likewise TIMEOUT + 2.5 s, then MPI_Abort
#   (PMIx's connection to srun's abort agent times out after 2 s), then ddpm's fallback kills it 5 s after: ~TIMEOUT
#   + 7.5 s. (With Slurm's default KillWait=30 srun ends at ~TIMEOUT + 34.5 s.)
GRACE=20
LIMIT=$((TIMEOUT + GRACE))
HOLD=45             # how long node 1 stays cut off (s after the cut)
RECONNECT_LIMIT=75  # slurmstepd of node 1 after the link is back: one 60 s sleep between tries + MessageTimeout (10 s)
DAEMONS='munged|slurmctld|slurmd|slurmscriptd'
NOTES=()
note() { NOTES+=("$*"); echo "note: $*"; }

mh_create 2
slurm_multinode_start
# Open MPI between the ranks: TCP on the hosts' subnet (the interface names differ per host; see hosts.sh); this also
# replaces ctest's OMPI_MCA_btl=self,vader, with which ranks on different nodes cannot reach each other.
export OMPI_MCA_btl=tcp,self OMPI_MCA_btl_tcp_if_include="$MH_CIDR"

train_srun() {  # train_srun NAME STEPS [srun options]: srun on node 0, one rank on each of the 2 nodes
  local name="$1" steps="$2"
  shift 2
  sl srun --mpi=pmix -N 2 -n 2 "$@" "$DDPM" train --config "$SRC/configs/smoke.yaml" --progress plain \
    --set "run.dir=$WORK/$name" --set "train.steps=$steps" --set train.log_every=1 --set train.checkpoint_every=3 \
    --set diffusion.timesteps=50 --set monitoring.eval_every=0 --set monitoring.enabled=false \
    --set "distributed.timeout_seconds=$TIMEOUT"
}

node_procs() {  # node_procs K [REGEX]: "pid:comm" of the processes on node K other than the daemons (matching REGEX)
  local pid comm
  for pid in $(mh_pids "$1"); do
    comm="$(cat "/proc/$pid/comm" 2>/dev/null)" || continue
    [[ "$comm" =~ ^($DAEMONS)$ ]] && continue
    [[ -z "${2:-}" || "$comm" =~ ^($2)$ ]] && printf '%s:%s ' "$pid" "$comm"
  done
}
all_procs() { local k; for k in "${!MH_NS[@]}"; do printf '%s: %s; ' "${MH_NAME[k]}" "$(node_procs "$k")"; done; }

# ---- a. Training across the nodes. ------------------------------------------------------------------------------
t0="$(now)"
train_srun across 6 >"$WORK/across.log" 2>&1
status=$?
if [[ $status -eq 0 && -f "$(ckpt_path "$WORK/across" 6)" ]] && verify_ckpt "$(ckpt_path "$WORK/across" 6)"; then
  ok "a: srun -N 2 -n 2: 6 steps across the nodes, the final checkpoint verifies ($(elapsed "$t0") s)"
else
  fail "a: srun exited $status, final checkpoint: $(newest_ckpt "$WORK/across")"; tail -n 8 "$WORK/across.log" | sed 's/^/    /'
fi
for k in 0 1; do
  if grep -q "^rank $k/2 (local 0) on ${MH_NAME[k]}: cpu" "$WORK/across.log"; then
    ok "a: rank $k is local rank 0 on its own node ${MH_NAME[k]}"
  else
    fail "a: no line 'rank $k/2 (local 0) on ${MH_NAME[k]}: cpu'"; grep '^rank ' "$WORK/across.log" | sed 's/^/    /'
  fi
done
for _ in $(seq 25); do [[ -z "$(node_procs 0)$(node_procs 1)" ]] && break; sleep 0.2; done
[[ -z "$(node_procs 0)$(node_procs 1)" ]] || fail "a: left after the run: $(all_procs)"

# ---- b, c. Node 1 cut off. -----------------------------------------------------------------------------------------
# When (s after the cut) srun ended, and on each node its ranks (ddpm, and the sh/sleep/kill of ddpm's abort fallback),
# its slurmstepd, everything but the daemons: at[srun], at[K.ranks], at[K.stepd], at[K.all].
declare -A at=()
CUT=""
JOB=""
watch() {  # watch UNTIL: until UNTIL s after the cut, or everything ended
  local t k
  while true; do
    t="$(elapsed "$CUT")"
    [[ -z "${at[srun]:-}" ]] && ! kill -0 "$JOB" 2>/dev/null && at[srun]=$t
    for k in 0 1; do
      [[ -z "${at[$k.ranks]:-}" && -z "$(node_procs "$k" 'ddpm|sh|sleep|kill')" ]] && at[$k.ranks]=$t
      [[ -z "${at[$k.stepd]:-}" && -z "$(node_procs "$k" slurmstepd)" ]] && at[$k.stepd]=$t
      [[ -z "${at[$k.all]:-}" && -z "$(node_procs "$k")" ]] && at[$k.all]=$t
    done
    [[ -n "${at[srun]:-}" && -n "${at[0.all]:-}" && -n "${at[1.all]:-}" ]] && return 0
    awk -v t="$t" -v u="$1" 'BEGIN { exit !(t >= u) }' && return 1
    sleep 0.2
  done
}
within() { awk -v t="${1:-}" -v l="$2" 'BEGIN { exit !(t != "" && t <= l) }'; }  # within T LIMIT

# partition_test NAME LABEL [srun options]: the long run, node 1 cut off ~1 s after the first checkpoint, HOLD s
# later the link back; the checks of the top. OUT: the file with the ranks' output (srun's own unless --output).
partition_test() {
  local name="$1" c="$2" k status cut_step back left_at_hold jobid
  shift 2
  at=()
  train_srun "$name" 100000 "$@" >"$WORK/$name.log" 2>&1 &
  JOB=$!
  for _ in $(seq 600); do
    ls "$WORK/$name"/ckpt-*.ddpm >/dev/null 2>&1 && break
    kill -0 "$JOB" 2>/dev/null || break
    sleep 0.1
  done
  if ! ls "$WORK/$name"/ckpt-*.ddpm >/dev/null 2>&1 || ! kill -0 "$JOB" 2>/dev/null; then
    tail -n 8 "$WORK/$name.log" | sed 's/^/    /'
    harness_error "$c: the job across the nodes did not start (no checkpoint in 60 s)"
  fi
  jobid="$(sl squeue --noheader --format %i 2>/dev/null | head -n 1)"
  sleep 1
  cut_step=$(newest_step "$WORK/$name")
  mh_partition 1
  CUT="$(now)"
  watch "$HOLD"
  left_at_hold="$(all_procs)"
  if within "${at[srun]:-}" "$LIMIT"; then
    wait "$JOB"
    status=$?
    if [[ $status -ne 0 ]]; then ok "$c: srun on mhost0 exited $status, ${at[srun]} s after the cut (limit $LIMIT s)"; else fail "$c: srun exited 0"; fi
  else
    fail "$c: srun on mhost0 ended ${at[srun]:-not} within $HOLD s of the cut (limit $LIMIT s)"
  fi
  for k in 0 1; do
    if within "${at[$k.ranks]:-}" "$LIMIT"; then
      ok "$c: the rank on ${MH_NAME[k]} (and ddpm's abort fallback) ended ${at[$k.ranks]} s after the cut (limit $LIMIT s)"
    else
      fail "$c: the rank on ${MH_NAME[k]} ended ${at[$k.ranks]:-not} within $HOLD s of the cut (limit $LIMIT s)"
    fi
  done
  if within "${at[0.all]:-}" "$LIMIT"; then
    ok "$c: every process of the job on mhost0 (srun, slurmstepd, rank) ended ${at[0.all]} s after the cut"
  else
    fail "$c: processes of the job on mhost0 ${at[0.all]:+ended at ${at[0.all]} s}: $(node_procs 0)"
  fi
  if [[ -z "${at[1.stepd]:-}" ]]; then
    note "$c: slurmstepd on mhost1 still runs $HOLD s after the cut, with no rank under it ($(node_procs 1)): Slurm" \
      "retries the step-complete message to slurmctld while the link is down"
  else
    note "$c: slurmstepd on mhost1 ended ${at[1.stepd]} s after the cut, with its link still down"
  fi
  mh_reconnect 1
  back="$(elapsed "$CUT")"
  watch "$(awk -v b="$back" -v l="$RECONNECT_LIMIT" 'BEGIN { print b + l }')"
  if [[ -n "${at[1.all]:-}" ]]; then
    ok "$c: nothing of the job left on mhost1 $(awk -v a="${at[1.all]}" -v b="$back" 'BEGIN { printf "%.1f", a - b }') s after the link is back (limit $RECONNECT_LIMIT s)"
  else
    fail "$c: left on mhost1 $RECONNECT_LIMIT s after the link is back: $(node_procs 1)"
  fi
  if [[ -z "$(node_procs 0)$(node_procs 1)" ]]; then
    ok "$c: no process but the daemons on any node (ip netns pids)"
  else
    fail "$c: left: $(all_procs)"
  fi
  note "$c: cut after the checkpoint of step $cut_step; s after the cut: srun ${at[srun]:-never}; ranks: mhost0 ${at[0.ranks]:-never}," \
    "mhost1 ${at[1.ranks]:-never}; slurmstepd: mhost0 ${at[0.stepd]:-never}, mhost1 ${at[1.stepd]:-never}" \
    "(link back at $back s); left at $HOLD s: $left_at_hold"
  note "$c: srun's output: $(grep -E '^ddpm: error|^srun: |slurmstepd.*(CANCELLED|error)|MPI_ABORT was invoked' "$WORK/$name.log" | cut -c1-240 | paste -sd'|' - | sed 's/|/ | /g')"
  note "$c: job ${jobid:-?} at the end: $(job_field "${jobid:-0}" JobState), exit $(job_field "${jobid:-0}" ExitCode); slurmstepd of mhost1: $(grep -F "[$jobid.0]" "$WORK/slurm/log/slurmd.mhost1.log" | grep -E 'Failed to send MESSAGE_TASK_EXIT|failed sending step completion|sent step completion|done with job' | sed 's/^\[[^]]*T//' | cut -c1-150 | paste -sd'|' - | sed 's/|/ | /g')"
  for _ in $(seq 25); do kill -0 "$JOB" 2>/dev/null || break; sleep 0.2; done
  wait "$JOB" 2>/dev/null
  nodes_idle "$c"
}

# nodes_idle LABEL: both nodes idle again for the next job: 10 s of waiting, then DOWN and RESUME. (The node cut off
# stays "completing" in slurmctld well after the link is back: slurmctld's terminate request to it failed during the
# cut, and is not resent at once; 30 s of waiting did not see it end in 3 runs.)
nodes_idle() {
  local t0 states
  t0="$(now)"
  for _ in $(seq 50); do
    states="$(sl sinfo --noheader --format '%n %T' 2>/dev/null | paste -sd' ' -)"
    [[ "$(grep -o ' idle' <<<"$states" | wc -l)" -eq 2 ]] && { note "$1: both nodes idle $(elapsed "$t0") s after the job ended"; return 0; }
    sleep 0.2
  done
  note "$1: nodes still '$states' 10 s after the job ended (job $(sl squeue --noheader --format '%i %T' 2>/dev/null | paste -sd' ' -)); scontrol update State=DOWN, then RESUME"
  sl scontrol update NodeName="${MH_NAME[1]}" State=DOWN Reason=partition_test
  sl scontrol update NodeName="${MH_NAME[1]}" State=RESUME
  for _ in $(seq 100); do
    states="$(sl sinfo --noheader --format '%n %T' 2>/dev/null | paste -sd' ' -)"
    [[ "$(grep -o ' idle' <<<"$states" | wc -l)" -eq 2 ]] && return 0
    sleep 0.2
  done
  harness_error "$1: the nodes are '$states', not idle, after DOWN and RESUME"
}

# b. The ranks' output through srun (what a user sees): rank 0's diagnosis reaches it; rank 1's cannot (its node is
#    cut off from srun).
partition_test partitioned b
if grep -qE "^ddpm: error \(rank 0 on ${MH_NAME[0]}\): rank 1 on ${MH_NAME[1]} is holding up the job" "$WORK/partitioned.log"; then
  ok "b: the culprit is named in srun's output: $(grep -m1 -oE "rank 1 on ${MH_NAME[1]} is holding up the job[^;]*" "$WORK/partitioned.log")"
else
  fail "b: srun's output does not name 'rank 1 on ${MH_NAME[1]} is holding up the job'"; tail -n 12 "$WORK/partitioned.log" | sed 's/^/    /'
fi
# c. Each task's output written by its node's slurmstepd (srun --output, on the shared file system): the rank cut off
#    diagnoses the job from its side as well, and ends by itself.
partition_test partitioned_files c --output="$WORK/partitioned_files.%t.out"
for k in 0 1; do
  other=$((1 - k))
  if grep -qE "^ddpm: error \(rank $k on ${MH_NAME[k]}\): rank $other on ${MH_NAME[other]} is holding up the job" "$WORK/partitioned_files.$k.out"; then
    ok "c: rank $k's own output on ${MH_NAME[k]} names rank $other on ${MH_NAME[other]}"
  else
    fail "c: rank $k's output does not name 'rank $other on ${MH_NAME[other]} is holding up the job'"
    grep -E '^ddpm' "$WORK/partitioned_files.$k.out" | tail -n 5 | sed 's/^/    /'
  fi
done
note "c: rank 1's own output (mhost1): $(grep -E '^ddpm: error' "$WORK/partitioned_files.1.out" | cut -c1-240 | paste -sd'|' - | sed 's/|/ | /g')"

echo "---- notes"
printf '%s\n' "${NOTES[@]}"
finish
