# shellcheck shell=bash
# Rows of a run against the clock (sourced; bash): each row is one command with an estimate and a cap in seconds,
# run in the order given while the run's time lasts, its outcome appended as one JSON line to the results file the
# moment it ends, so that a run stopped at any point has written every row it finished. launch/gpu/run.sh is made
# of them; tests/launch/rows_test.sh checks this file with stand-in commands.
#
#   rows_begin RESULTS LIMIT [PREVIOUS]  start the clock: LIMIT seconds for the whole run. PREVIOUS, an earlier
#                                        run's RESULTS: its rows that were ok are copied ("kept"), not run again
#   rows_phase NAME LIMIT                the rows that follow belong to NAME and share LIMIT seconds (within the
#                                        run's)
#   row NAME ESTIMATE CAP CMD...         CMD, if ESTIMATE seconds are left (else "skipped"), stopped after CAP
#                                        seconds or when the time left runs out ("timeout"); "ok" when it exits 0,
#                                        else "failed". Its report is the last line of its standard output that is
#                                        a JSON object. Its output goes to ROWS_LOGS/NAME.log; a row that is not ok
#                                        carries the last lines of it
#   rows_left                            seconds left to the phase (and the run)
#   rows_field RESULTS NAME [EXPRESSION] a figure of a row, for the scripts and tests that read the results
#   rows_end                             a count by status; returns 0 when no row failed or timed out
#
# A row's line: {"phase", "name", "status", "seconds", "exit", "report"?, "reason"?, "log_tail"?}.
# Environment: PYTHON (a python3 that writes the lines; default python3), ROWS_LOGS (default: beside RESULTS),
# ROWS_MIRROR (a second file every line is appended to: a copy that outlives the command's output folder).

rows_json() {  # rows_json PHASE NAME STATUS SECONDS EXIT REASON [LOG]: the row's line on stdout
  "${PYTHON:-python3}" - "$@" <<'PY'
import json, sys
phase, name, status, seconds, code, reason = sys.argv[1:7]
log = sys.argv[7] if len(sys.argv) > 7 else ""
row = {"phase": phase, "name": name, "status": status, "seconds": round(float(seconds), 1), "exit": int(code)}
lines = []
if log:
    with open(log, errors="replace") as f:
        lines = f.read().splitlines()
report = None
for line in reversed(lines):
    if line.startswith("{"):
        try:
            candidate = json.loads(line)
        except ValueError:
            continue
        if isinstance(candidate, dict):
            report = candidate
            break
if report is not None:
    row["report"] = report
if status == "ok" and report is None:
    row["status"], reason = "failed", "exited 0 without a JSON report on its last lines"
if reason:
    row["reason"] = reason
if row["status"] not in ("ok", "skipped") and lines:
    row["log_tail"] = "\n".join(lines[-30:])[-4000:]
print(json.dumps(row))
PY
}

rows_append() {  # rows_append LINE
  echo "$1" >>"$ROWS_RESULTS"
  if [[ -n "${ROWS_MIRROR:-}" ]]; then echo "$1" >>"$ROWS_MIRROR"; fi
}

rows_begin() {  # rows_begin RESULTS LIMIT [PREVIOUS]
  ROWS_RESULTS="$1"
  ROWS_DEADLINE=$((SECONDS + $2))
  ROWS_PREVIOUS="${3:-}"
  ROWS_PHASE="run"
  ROWS_PHASE_DEADLINE=$ROWS_DEADLINE
  ROWS_LOGS="${ROWS_LOGS:-$(dirname "$ROWS_RESULTS")/logs}"
  mkdir -p "$ROWS_LOGS"
  : >"$ROWS_RESULTS"
  if [[ -n "$ROWS_PREVIOUS" && ! -f "$ROWS_PREVIOUS" ]]; then
    echo "rows: no earlier results at $ROWS_PREVIOUS: every row runs" >&2
    ROWS_PREVIOUS=""
  fi
}

rows_phase() {  # rows_phase NAME LIMIT
  ROWS_PHASE="$1"
  ROWS_PHASE_DEADLINE=$((SECONDS + $2))
  ((ROWS_PHASE_DEADLINE <= ROWS_DEADLINE)) || ROWS_PHASE_DEADLINE=$ROWS_DEADLINE
  echo "[rows +${SECONDS}s] phase $1: up to $(rows_left) s"
}

rows_left() {
  local left=$((ROWS_PHASE_DEADLINE - SECONDS))
  ((left >= 0)) || left=0
  echo "$left"
}

rows_kept() {  # rows_kept NAME: the earlier run's line of NAME, if it was ok there, marked kept
  [[ -n "$ROWS_PREVIOUS" ]] || return 1
  "${PYTHON:-python3}" - "$ROWS_PREVIOUS" "$1" <<'PY'
import json, sys
kept = None
for line in open(sys.argv[1]):
    try:
        row = json.loads(line)
    except ValueError:
        continue
    if row.get("name") == sys.argv[2]:
        kept = row if row.get("status") in ("ok", "kept") else None
if kept is None:
    sys.exit(1)
kept["status"] = "kept"
print(json.dumps(kept))
PY
}

row() {  # row NAME ESTIMATE CAP CMD...
  local name="$1" estimate="$2" cap="$3" line left code start status reason=""
  shift 3
  if line="$(rows_kept "$name")"; then
    rows_append "$line"
    echo "[rows +${SECONDS}s] $name: kept from the earlier run"
    return 0
  fi
  left="$(rows_left)"
  if ((left < estimate)); then
    rows_append "$(rows_json "$ROWS_PHASE" "$name" skipped 0 0 "$left s left of phase $ROWS_PHASE, the row needs about $estimate s")"
    echo "[rows +${SECONDS}s] $name: skipped ($left s left, needs about $estimate s)"
    return 0
  fi
  ((cap <= left)) || cap=$left
  local log="$ROWS_LOGS/$name.log"
  start=$SECONDS
  echo "[rows +${SECONDS}s] $name: running (about $estimate s, at most $cap s)"
  code=0
  # timeout signals its whole process group: the command's children (ddpm under a script) stop with it.
  timeout --kill-after=10 "$cap" "$@" >"$log" 2>&1 </dev/null || code=$?
  case "$code" in
    0) status=ok ;;
    124) status=timeout reason="stopped after $cap s" ;;
    # SIGKILL: timeout's --kill-after at the cap, or something else (the kernel's OOM killer) before it.
    137) if ((SECONDS - start >= cap)); then status=timeout reason="stopped after $cap s"
         else status=failed reason="killed (exit 137) after $((SECONDS - start)) s, before its cap"; fi ;;
    *) status=failed reason="exited $code" ;;
  esac
  line="$(rows_json "$ROWS_PHASE" "$name" "$status" $((SECONDS - start)) "$code" "$reason" "$log")"
  rows_append "$line"
  [[ "$line" =~ \"status\":\ \"([a-z]+)\" ]] && status="${BASH_REMATCH[1]}"  # rows_json may have failed an ok
  echo "[rows +${SECONDS}s] $name: $status ($((SECONDS - start)) s)"
  if [[ "$status" != ok ]]; then tail -n 15 "$log" | sed 's/^/    /'; fi
  return 0
}

rows_field() {  # rows_field RESULTS NAME [EXPRESSION]: a Python expression (default r["status"]) of row NAME's line r
  # and its report rep, printed; nothing when RESULTS has no such row
  "${PYTHON:-python3}" - "$@" <<'PY'
import json, sys
expression = sys.argv[3] if len(sys.argv) > 3 else 'r["status"]'
for line in open(sys.argv[1]):
    r = json.loads(line)
    if r.get("name") == sys.argv[2]:
        rep = r.get("report", {})
        print(eval(expression))
PY
}

rows_end() {
  "${PYTHON:-python3}" - "$ROWS_RESULTS" <<'PY'
import collections, json, sys
rows = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
counts = collections.Counter(r["status"] for r in rows)
print("rows: " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) if rows else "rows: none")
for r in rows:
    if r["status"] not in ("ok", "kept"):
        print(f"  {r['status']}: {r['name']}" + (f" ({r['reason']})" if r.get("reason") else ""))
sys.exit(1 if counts["failed"] or counts["timeout"] else 0)
PY
}
