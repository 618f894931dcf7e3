#!/usr/bin/env bash
# Training across hosts: 3 "hosts" (network namespaces behind a switch, each with its own host name and address, see
# hosts.sh), one rank each, launched by mpirun on host 0 through an ssh stand-in (netns_rsh.sh).
#   a. 20 steps across the hosts end bitwise equal (model/, ema_) to the same 3-rank run on one host; every rank
#      names its own host and is local rank 0 there.
#   b. kill -9 of the rank on host 1: the job ends non-zero within distributed.timeout_seconds + grace, the dead rank
#      named, no process left on any host (mpirun, orted, ranks); the same command then resumes and finishes.
#   c. host 1 partitioned (its switch port down), c1 between checkpoints, c2 while rank 0 writes one: the job ends by
#      itself on every host (mpirun on host 0, orted and rank on host 1, host 2) within timeout_seconds + grace, rank 1
#      on mhost1 named; the link back up, the job resumes. (Past that limit the test watches what is left, 60 s at most
#      and 20 s after the reconnect, and reports it.)
#   d. monitoring.bind_address as the hosts' subnet: each rank serves /metrics on its own host's address, the targets
#      file lists one address per host, and each endpoint answers from another host.
# Network: only the addresses of the namespaces made here (10.231.0.0/24 inside them) and loopback.
# Skipped (77) where network namespaces cannot be made (no root / CAP_SYS_ADMIN).
# Usage: multihost_test.sh DDPM COMPARE_CHECKPOINTS SOURCE_DIR
set -uo pipefail
# shellcheck source=../lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
# shellcheck source=hosts.sh
source "$(dirname "${BASH_SOURCE[0]}")/hosts.sh"
require_args 3 "multihost_test.sh DDPM COMPARE_CHECKPOINTS SOURCE_DIR" "$@"
DDPM="$(realpath "$1")"
COMPARE="$(realpath "$2")"
SRC="$(realpath "$3")"
require_executables "$DDPM" "$COMPARE" "$MH_RSH"
require_files "$SRC/configs/smoke.yaml"
require_commands mpirun python3 curl awk realpath
export OMP_NUM_THREADS=1
TIMEOUT=10   # distributed.timeout_seconds
GRACE=20     # what a failure may take beyond it, on every host
HOSTS=3
NOTES=()     # per scenario: the time to end and the key messages, printed at the end
note() { NOTES+=("$*"); echo "note: $*"; }

mh_create "$HOSTS"
mh_on_argv 0
MH_ON_0=("${MH_ON[@]}")  # the words that run a command on host 0
mh_hostfile 1
echo "hosts: $(for k in "${!MH_NS[@]}"; do printf '%s=%s(%s) ' "${MH_NAME[k]}" "${MH_ADDR[k]}" "${MH_NS[k]}"; done)"

ddpm_args() {  # ddpm_args NAME STEPS [--set ...]: the training command of every run
  local name="$1" steps="$2"
  shift 2
  echo "$DDPM" train --config "$SRC/configs/smoke.yaml" --progress plain --set "run.dir=$WORK/$name" \
    --set "train.steps=$steps" --set train.log_every=1 --set train.checkpoint_every=3 --set diffusion.timesteps=50 \
    --set monitoring.eval_every=0 --set "distributed.timeout_seconds=$TIMEOUT" "$@"
}
# shellcheck disable=SC2046  # ddpm_args' words: no path here holds a space (mktemp, the checkout)
# A run in the foreground, bounded: a job that cannot start or end is a failed check, not a hung test.
train_hosts() { local name="$1"; shift; timeout -k 5 240 "${MH_ON_0[@]}" "${MH_MPIRUN[@]}" -np "$HOSTS" $(ddpm_args "$name" "$@"); }

JOB=""
WRAP=()  # more mpirun options for the next start_job
start_job() {  # start_job NAME [--set ...]: a long run across the hosts in the background; JOB is mpirun's PID
  local name="$1"
  shift
  mh_on_argv 0
  # shellcheck disable=SC2046
  "${MH_ON[@]}" "${MH_MPIRUN[@]}" -np "$HOSTS" "${WRAP[@]}" $(ddpm_args "$name" 100000 "$@") >"$WORK/$name.log" 2>&1 &
  JOB=$!
}

wait_for_checkpoint() {  # wait_for_checkpoint NAME: a checkpoint exists (90 s at most, or the job ended)
  for _ in $(seq 900); do
    ls "$WORK/$1"/ckpt-*.ddpm >/dev/null 2>&1 && return 0
    kill -0 "$JOB" 2>/dev/null || return 1
    sleep 0.1
  done
  return 1
}

host_procs() {  # host_procs: "mhostK: pid comm, ..." for every host with a process left
  local k list out=""
  for k in "${!MH_NS[@]}"; do
    list="$(mh_procs "$k" | paste -sd, -)"
    [[ -n "$list" ]] && out+="${MH_NAME[k]}: ${list//,/, }; "
  done
  echo "${out%; }"
}

wait_hosts_empty() {  # wait_hosts_empty SECONDS: until no process is left on any host
  local end=$((SECONDS + $1))
  while ((SECONDS < end)); do
    [[ -z "$(host_procs)" ]] && return 0
    sleep 0.2
  done
  [[ -z "$(host_procs)" ]]
}

resume() {  # resume NAME WHAT [--set ...]: the same command again (to the newest step + 2): resumes and finishes
  local name="$1" what="$2" step
  shift 2
  step=$(newest_step "$WORK/$name")
  if verify_ckpt "$(ckpt_path "$WORK/$name" "$step")"; then ok "$what: the newest checkpoint (step $step) verifies"; else fail "$what: checkpoint of step $step: $VERIFY_OUT"; fi
  local start=$SECONDS
  if train_hosts "$name" $((step + 2)) "$@" >"$WORK/$name.resume.log" 2>&1 && grep -q "resumed at step $step" "$WORK/$name.resume.log"; then
    ok "$what: resumed at step $step across the hosts and finished ($((SECONDS - start)) s)"
  else
    fail "$what: no resume from step $step"; tail -n 8 "$WORK/$name.resume.log" | sed 's/^/    /'
  fi
  wait_hosts_empty 5 || { fail "$what: processes left after the resumed run: $(host_procs)"; for k in "${!MH_NS[@]}"; do mh_kill_all "$k"; done; }
}

key_lines() {  # key_lines LOG [FIRST_LINE]: the lines that say why a job ended (ddpm's errors, Open MPI's verdicts)
  tail -n +"${2:-1}" "$1" | grep -E "^ddpm: error|mpirun noticed|MPI_ABORT was invoked|ORTE has lost|lost communication|unable to|daemon" |
    head -n 8 | cut -c1-260 | paste -sd'|' - | sed 's/|/ | /g'
}

rank_on_host() {  # rank_on_host K RANK: the PID of the ddpm process of RANK in host K's namespace
  local pid
  for pid in $(mh_pids "$1"); do
    [[ "$(cat "/proc/$pid/comm" 2>/dev/null)" == ddpm ]] || continue
    if tr '\0' '\n' <"/proc/$pid/environ" 2>/dev/null | grep -qx "OMPI_COMM_WORLD_RANK=$2"; then echo "$pid"; return 0; fi
  done
  return 1
}

# ---- a. Across hosts = on one host, bitwise. -----------------------------------------------------------------
start=$SECONDS
train_hosts across 20 >"$WORK/across.log" 2>&1
status=$?
across_s=$((SECONDS - start))
if [[ $status -eq 0 ]]; then ok "a: 20 steps across $HOSTS hosts (${across_s} s)"; else fail "a: the run across hosts exited $status"; tail -n 8 "$WORK/across.log" | sed 's/^/    /'; fi
for ((k = 0; k < HOSTS; k++)); do
  if grep -q "^rank $k/$HOSTS (local 0) on ${MH_NAME[k]}: cpu" "$WORK/across.log"; then
    ok "a: rank $k is local rank 0 on its own host ${MH_NAME[k]}"
  else
    fail "a: no line 'rank $k/$HOSTS (local 0) on ${MH_NAME[k]}: cpu'"; grep '^rank ' "$WORK/across.log" | sed 's/^/    /'
  fi
done
start=$SECONDS
# The same world size on one host (host 0, shared memory among its ranks).
# shellcheck disable=SC2046
mh_on 0 mpirun --oversubscribe -np "$HOSTS" $(ddpm_args onehost 20) >"$WORK/onehost.log" 2>&1 || { fail "a: the one-host run"; tail -n 8 "$WORK/onehost.log"; }
onehost_s=$((SECONDS - start))
if [[ -f "$(ckpt_path "$WORK/across" 20)" && -f "$(ckpt_path "$WORK/onehost" 20)" ]]; then
  for prefix in model/ ema_; do
    expect_same "a: across hosts = one host ($prefix)" "$(ckpt_path "$WORK/across" 20)" "$(ckpt_path "$WORK/onehost" 20)" --prefix "$prefix"
  done
else
  fail "a: a final checkpoint is missing"
fi
# The default loopback address serves only the local host: rank 0 says so across hosts, and never on one host.
warning="monitoring.bind_address 127.0.0.1 is a loopback address and the job spans several hosts"
if grep -q "$warning" "$WORK/across.log" && ! grep -q "$warning" "$WORK/onehost.log"; then
  ok "a: the loopback metrics address is warned about across hosts only"
else
  fail "a: the loopback warning: across hosts $(grep -c "$warning" "$WORK/across.log"), on one host $(grep -c "$warning" "$WORK/onehost.log") (expected 1 and 0)"
fi
note "a: 20 steps: ${across_s} s across $HOSTS hosts, ${onehost_s} s on one host; $(grep '^rank ' "$WORK/across.log" | sort | paste -sd';' - | sed 's/;/; /g')"
wait_hosts_empty 5 || { fail "a: processes left: $(host_procs)"; for k in "${!MH_NS[@]}"; do mh_kill_all "$k"; done; }

# ---- b. A remote rank killed. --------------------------------------------------------------------------------

start_job killed
if wait_for_checkpoint killed && pid=$(rank_on_host 1 1); then
  kill -KILL "$pid"
  start=$SECONDS
  while kill -0 "$JOB" 2>/dev/null && ((SECONDS - start < TIMEOUT + GRACE)); do sleep 0.2; done
  if kill -0 "$JOB" 2>/dev/null; then
    fail "b: mpirun still runs $((TIMEOUT + GRACE)) s after the rank on mhost1 was killed; left: $(host_procs)"
  else
    wait "$JOB" 2>/dev/null
    status=$?
    ended=$((SECONDS - start))
    if [[ $status -ne 0 ]]; then ok "b: the job exited $status ${ended} s after kill -9 of rank 1 on mhost1"; else fail "b: the job exited 0"; fi
  fi
  if wait_hosts_empty 5; then ok "b: no process left on any host"; else fail "b: processes left: $(host_procs)"; fi
  if grep -qE "process rank 1 with PID $pid on node (${MH_ADDR[1]}|${MH_NAME[1]}) exited on signal 9" "$WORK/killed.log"; then
    ok "b: the dead rank is named: $(grep -m1 -oE "process rank 1 with PID .* exited on signal 9" "$WORK/killed.log")"
  else
    fail "b: the dead rank (1, PID $pid, on ${MH_NAME[1]}) is not named"; tail -n 12 "$WORK/killed.log" | sed 's/^/    /'
  fi
  note "b: kill -9 of rank 1 (PID $pid) on mhost1: mpirun ended after ${ended:-?} s (limit $((TIMEOUT + GRACE)) s), exit ${status:-?}; key lines: $(key_lines "$WORK/killed.log")"
  for k in "${!MH_NS[@]}"; do mh_kill_all "$k"; done
  wait "$JOB" 2>/dev/null
  resume killed "b"
else
  fail "b: the job did not start or no rank 1 on mhost1"; tail -n 8 "$WORK/killed.log" | sed 's/^/    /'
  for k in "${!MH_NS[@]}"; do mh_kill_all "$k"; done
fi

# ---- c. A host partitioned. ----------------------------------------------------------------------------------
# c1: host 1 cut off between checkpoints (its rank blocks in a step's collectives); c2: cut off while rank 0 writes a
# checkpoint (rank 0 held with SIGSTOP for the few milliseconds of the cut, inside the write): host 1's rank then
# blocks in the checkpoint's collectives, which the watchdog allows 10x distributed.timeout_seconds.
# mpirun ended by SIGKILL (ddpm's abort fallback) makes bash print a "Killed" line for the background job.
# Each rank's output also goes to a file written on its own host by its Open MPI daemon (--output-filename: host 1's
# output cannot reach mpirun while it is cut off); no process is added to the job.
rank_output() { cat "$WORK/$1.out"/*/rank."$2"/std* 2>/dev/null; }  # rank_output NAME R: rank R's own output

# watch_hosts UNTIL: from the cut (CUT, in $SECONDS) until UNTIL s after it or until every host is empty and mpirun
# ended: when each host's last process ended (empty_at), when mpirun ended (job_end), in seconds after the cut; TRACE
# holds what ran where, every 5 s.
declare -A empty_at=()
job_end=""
TRACE=""
CUT=0
watch_hosts() {
  local t k
  while true; do
    t=$((SECONDS - CUT))
    [[ -z "$job_end" ]] && ! kill -0 "$JOB" 2>/dev/null && job_end=$t
    for k in "${!MH_NS[@]}"; do
      [[ -z "${empty_at[$k]:-}" && -z "$(mh_pids "$k")" ]] && empty_at[$k]=$t
    done
    [[ -n "$job_end" && ${#empty_at[@]} -eq $HOSTS ]] && return 0
    ((t >= $1)) && return 1
    if ((t % 5 == 0)) && [[ "$TRACE" != *"t=${t}s:"* ]]; then TRACE+="t=${t}s: $(host_procs); "; fi
    sleep 0.25
  done
}
emptied() { local k; for k in "${!MH_NS[@]}"; do printf '%s=%s ' "${MH_NAME[k]}" "${empty_at[$k]:-never}"; done; }

# stop_in_checkpoint_write NAME PID: SIGSTOP to rank 0 (PID) while it writes a checkpoint: its temp file
# .ckpt-*.tmp seen, rank 0 stopped, the temp file still there (else rank 0 goes on and the next write is tried).
# Polled every 2 ms, 60 s at most. The other ranks then wait in that checkpoint's collectives.
stop_in_checkpoint_write() {
  python3 - "$WORK/$1" "$2" <<'PY'
import os, signal, sys, time
run, pid = sys.argv[1], int(sys.argv[2])
writing = lambda: any(n.startswith(".ckpt-") and n.endswith(".tmp") for n in os.listdir(run))
end = time.monotonic() + 60
while time.monotonic() < end:
    if writing():
        os.kill(pid, signal.SIGSTOP)
        if writing():
            sys.exit(0)
        os.kill(pid, signal.SIGCONT)
    time.sleep(0.002)
sys.exit(1)
PY
}

partition_test() {  # partition_test NAME LABEL between|in_write
  local name="$1" c="$2" when="$3" limit=$((TIMEOUT + GRACE)) k status left cut_step lines_before back
  empty_at=()
  job_end=""
  TRACE=""
  [[ $when == between || $when == in_write ]] || harness_error "partition_test: WHEN is between or in_write, not '$when'"
  WRAP=(--output-filename "$WORK/$name.out")
  if [[ $when == between ]]; then
    start_job "$name" --set train.checkpoint_every=10  # the cut ~1 s after step 10's checkpoint, long before step 20's
  else
    start_job "$name"                                  # a checkpoint every 3 steps
  fi
  WRAP=()
  if ! wait_for_checkpoint "$name" || ! kill -0 "$JOB" 2>/dev/null; then
    fail "$c: the job did not start"; tail -n 8 "$WORK/$name.log" | sed 's/^/    /'
    for k in "${!MH_NS[@]}"; do mh_kill_all "$k"; done
    return
  fi
  cut_step=""
  if [[ $when == between ]]; then
    sleep 1
    cut_step=$(newest_step "$WORK/$name")
    mh_partition 1
  else
    local rank0
    if ! rank0=$(rank_on_host 0 0) || ! stop_in_checkpoint_write "$name" "$rank0"; then
      fail "$c: could not catch rank 0 in a checkpoint write within 60 s"
      for k in "${!MH_NS[@]}"; do mh_kill_all "$k"; done
      return
    fi
    cut_step=$(newest_step "$WORK/$name")
    mh_partition 1
    kill -CONT "$rank0"  # it finishes the write; host 1 never hears of it
  fi
  CUT=$SECONDS
  watch_hosts "$limit"
  left="$(host_procs)"
  for k in "${!MH_NS[@]}"; do
    if [[ -n "${empty_at[$k]:-}" ]]; then
      ok "$c: every process on ${MH_NAME[k]} ended ${empty_at[$k]} s after the cut (limit $limit s)"
    else
      fail "$c: processes still run on ${MH_NAME[k]} $limit s after the cut: $(mh_procs "$k" | paste -sd, -)"
    fi
  done
  if [[ -n "$job_end" ]]; then
    wait "$JOB" 2>/dev/null
    status=$?
    if [[ $status -ne 0 ]]; then ok "$c: mpirun on mhost0 exited $status, $job_end s after the cut"; else fail "$c: mpirun exited 0"; fi
  else
    fail "$c: mpirun on mhost0 still runs $limit s after host 1 was cut off"
  fi
  if grep -qE "rank 1 on ${MH_NAME[1]} is holding up the job" "$WORK/$name.log"; then
    ok "$c: the culprit is named: $(grep -m1 -oE "rank 1 on ${MH_NAME[1]} is holding up the job[^;]*" "$WORK/$name.log")"
  else
    fail "$c: mpirun's output does not name 'rank 1 on ${MH_NAME[1]} is holding up the job'"; tail -n 12 "$WORK/$name.log" | sed 's/^/    /'
  fi
  note "$c: host 1 cut off ($([[ $when == between ]] && echo "between checkpoints" || echo "while rank 0 writes a checkpoint"); newest checkpoint before the cut: step $cut_step): mpirun ended: ${job_end:-no (still running at $limit s)}; hosts emptied at (s after the cut): $(emptied)"
  note "$c: mpirun's key lines: $(key_lines "$WORK/$name.log")"
  note "$c: rank 1's own output (on mhost1, not forwarded while cut off): $(key_lines <(rank_output "$name" 1))"
  if [[ -n "$left" ]]; then
    # Past the contract: does it end late, or never while the link is down? 60 s after the cut at most; then the
    # link back (20 s observed); then whatever is left is killed.
    note "$c: left at $limit s: $left"
    watch_hosts 60
    note "$c: link still down, 60 s after the cut: hosts emptied at: $(emptied); mpirun ended: ${job_end:-no}; left: $(host_procs); trace: $TRACE"
    lines_before=$(wc -l <"$WORK/$name.log")
    mh_reconnect 1
    back=$((SECONDS - CUT))
    watch_hosts $((back + 20))
    note "$c: link back up at $back s after the cut: hosts emptied at: $(emptied); mpirun ended: ${job_end:-no}; left: $(host_procs)"
    if [[ -n "$job_end" ]]; then wait "$JOB" 2>/dev/null; note "$c: mpirun's exit status: $?"; fi
    note "$c: mpirun printed after the reconnect: $(tail -n +$((lines_before + 1)) "$WORK/$name.log" | grep -v '^ *$' | head -n 6 | cut -c1-200 | paste -sd'|' - | sed 's/|/ | /g')"
    note "$c: rank 1's own output in the end: $(key_lines <(rank_output "$name" 1))"
  fi
  mh_reconnect 1
  for k in "${!MH_NS[@]}"; do mh_kill_all "$k"; done
  wait "$JOB" 2>/dev/null
  wait_hosts_empty 5 || harness_error "$c: processes survive SIGKILL: $(host_procs)"
  if [[ $when == between ]]; then resume "$name" "$c" --set train.checkpoint_every=10; else resume "$name" "$c"; fi
}

partition_test partitioned c1 between
partition_test partitioned_in_checkpoint c2 in_write

# ---- d. Monitoring across hosts. -----------------------------------------------------------------------------
start_job monitored --set "monitoring.bind_address=$MH_CIDR" --set monitoring.base_port=9400
TARGETS="$WORK/monitored/prometheus_targets.json"
for _ in $(seq 600); do
  [[ -f "$TARGETS" && -f "$WORK/monitored/train_log.jsonl" ]] && break
  kill -0 "$JOB" 2>/dev/null || break
  sleep 0.1
done
if [[ -f "$TARGETS" ]] && kill -0 "$JOB" 2>/dev/null; then
  mapfile -t targets < <(python3 -c 'import json,sys; print("\n".join(json.load(open(sys.argv[1]))[0]["targets"]))' "$TARGETS")
  hosts_listed="$(printf '%s\n' "${targets[@]%:*}" | sort -u | wc -l)"
  if [[ ${#targets[@]} -eq $HOSTS && $hosts_listed -eq $HOSTS ]]; then
    ok "d: the targets file lists $HOSTS distinct hosts: ${targets[*]}"
  else
    fail "d: the targets file should list one distinct address per host: $(tr -d ' \n' <"$TARGETS")"
  fi
  for ((k = 0; k < HOSTS && k < ${#targets[@]}; k++)); do
    if [[ "${targets[k]}" == "${MH_ADDR[k]}:9400" ]]; then ok "d: rank $k listed as ${targets[k]} (its host's address)"; else fail "d: rank $k listed as ${targets[k]}, expected ${MH_ADDR[k]}:9400"; fi
    from=$(((k + 1) % HOSTS))
    got=0
    for _ in $(seq 10); do  # bounded: 10 tries, 1 s apart, until rank k logged a loss
      if mh_on "$from" curl --noproxy '*' -sf -m 3 "http://${targets[k]}/metrics" >"$WORK/metrics.$k" 2>/dev/null &&
         grep -qE "^ddpm_train_loss\{rank=\"$k\"" "$WORK/metrics.$k"; then got=1; break; fi
      sleep 1
    done
    if ((got)); then
      ok "d: ${targets[k]} answers GET /metrics from ${MH_NAME[from]}: $(grep -m1 -E "^ddpm_train_loss\{rank=\"$k\"" "$WORK/metrics.$k")"
    else
      fail "d: no ddpm_train_loss of rank $k from http://${targets[k]}/metrics fetched on ${MH_NAME[from]}"
    fi
  done
  note "d: targets ${targets[*]}"
else
  fail "d: the job with monitoring.bind_address=$MH_CIDR did not start serving (no $TARGETS)"; tail -n 6 "$WORK/monitored.log" | sed 's/^/    /'
  note "d: monitoring.bind_address=$MH_CIDR: $(grep -m2 -E "error|bind_address" "$WORK/monitored.log" | cut -c1-240 | paste -sd'|' -)"
fi
kill -TERM "$JOB" 2>/dev/null  # mpirun forwards it: every rank checkpoints and exits
for _ in $(seq 300); do kill -0 "$JOB" 2>/dev/null || break; sleep 0.1; done
for k in "${!MH_NS[@]}"; do mh_kill_all "$k"; done
wait "$JOB" 2>/dev/null

echo "---- notes"
printf '%s\n' "${NOTES[@]}"
finish
