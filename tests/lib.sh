# Shared by the fault-injection test scripts (sourced): a work directory that is removed on exit together with
# every process still using it, ok/fail counting, and helpers to find a job's checkpoints and rank processes.
WORK="$(mktemp -d)"
failures=0
passes=0
EXTRA_CLEANUP=":"  # a script may set more to undo on exit (an unmount, a chmod)
trap 'pkill -KILL -f -- "$WORK/" 2>/dev/null; eval "$EXTRA_CLEANUP"; rm -rf "$WORK"' EXIT
ok() { echo "ok: $*"; passes=$((passes + 1)); }
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }

ckpt_path() { printf '%s/ckpt-%09d.ddpm' "$1" "$2"; }  # ckpt_path RUN_DIR STEP

newest_step() {  # newest_step RUN_DIR: the step of the newest checkpoint file (0 when none)
  local newest
  newest="$(ls "$1"/ckpt-*.ddpm 2>/dev/null | sort | tail -n 1)"
  [[ -z "$newest" ]] && { echo 0; return; }
  echo $((10#$(basename "$newest" .ddpm | sed 's/ckpt-//')))
}

rank_pid() {  # rank_pid PATTERN RANK [EXCLUDED_PID]: the process of rank RANK among those matching PATTERN
  local pid
  for pid in $(pgrep -f -- "$1"); do
    [[ "$pid" == "${3:-}" ]] && continue
    if tr '\0' '\n' <"/proc/$pid/environ" 2>/dev/null | grep -qx "OMPI_COMM_WORLD_RANK=$2"; then
      echo "$pid"
      return 0
    fi
  done
  return 1
}

finish() {  # the last line of a test script: the counts, and the exit status
  echo "$passes passed, $failures failed"
  [[ $failures -eq 0 ]]
}
