# shellcheck shell=bash
# The one harness of the test scripts, sourced by every one of them: tests/<folder>/x.sh starts with
#   source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
# It gives a work directory, ok/fail counting, the harness's own errors, and helpers for checkpoints and ranks.
#
# Two kinds of bad news, kept apart:
#   fail MESSAGE            a result differs from what the test expects: "FAIL: MESSAGE", counted, the script goes on;
#                           finish then exits 1.
#   harness_error MESSAGE   the test cannot run as written (a missing file or tool, a command that could not start,
#                           compare_checkpoints refusing its arguments or unable to read a file it was given):
#                           "HARNESS ERROR: MESSAGE" on stderr and exit 2 at once. Called in a subshell ($(...), a
#                           pipeline, a background job) it ends only that subshell, with 2; it is recorded in the work
#                           directory, and finish exits 2 all the same.
# Exit statuses of a script: 0 every check passed, 1 some check failed (fail), 2 harness error, 77 skipped
# (disk_test.sh without a mount namespace; ctest's SKIP_RETURN_CODE).
#
# WORK is a temp directory, removed on exit together with every process whose command line names it (so name it
# in the jobs: run.dir=$WORK/...); EXTRA_CLEANUP is more to undo on exit, after those processes are killed and before
# the removal (an unmount, a chmod).
#
# Helpers: ok, fail, harness_error, finish (or exit_status after a summary of the script's own); require_args,
# require_files, require_executables, require_commands, started (harness errors when something is missing or could
# not start); check NAME COMMAND..., expect_exit CODE REGEX COMMAND...; ckpt_path, newest_ckpt, newest_step;
# compare_ckpt, verify_ckpt, expect_same, expect_different (through "$COMPARE", tests/compare_checkpoints.cpp, whose
# exit codes are 0 equal, 1 different, 2 usage error, 3 a file that cannot be read or does not verify); rank_pid.

HARNESS_ERROR_STATUS=2
WORK="$(mktemp -d)" || { echo "HARNESS ERROR: mktemp -d failed" >&2; exit "$HARNESS_ERROR_STATUS"; }
HARNESS_ERRORS="$WORK/.harness_errors"  # one line per harness error, from any (sub)shell of the script
failures=0
passes=0
EXTRA_CLEANUP=":"
trap 'pkill -KILL -f -- "$WORK/" 2>/dev/null; eval "$EXTRA_CLEANUP"; rm -rf "$WORK"' EXIT

ok() { echo "ok: $*"; passes=$((passes + 1)); }
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }

harness_error() {  # harness_error MESSAGE: the test itself cannot go on; exits 2 (see above)
  local message="HARNESS ERROR: $*"
  message="${message//$'\n'/ | }"  # one line
  # A missing file may follow from a check that failed before (a run that did not finish): say so.
  ((failures > 0)) && message+=" (after $failures failed check(s) above, which may be the cause)"
  echo "$message" >&2
  if [[ -d "$WORK" ]]; then echo "$message" >>"$HARNESS_ERRORS"; fi
  exit "$HARNESS_ERROR_STATUS"
}

# exit_status: exits 2 after any harness error (a subshell's included), 1 after any fail, 2 when no check ran at all
# (neither ok nor fail, nor one the script counted in `skipped` on purpose), else 0.
exit_status() {
  if [[ -s "$HARNESS_ERRORS" ]]; then
    echo "HARNESS ERROR: $(wc -l <"$HARNESS_ERRORS") harness error(s) in this run:" >&2
    sed 's/^/  /' "$HARNESS_ERRORS" >&2
    exit "$HARNESS_ERROR_STATUS"
  fi
  [[ "${skipped:-0}" =~ ^[0-9]+$ ]] || harness_error "the script's \$skipped is not a count: '${skipped}'"
  ((passes + failures + ${skipped:-0} > 0)) || harness_error "no check ran"
  ((failures == 0)) || exit 1
  exit 0
}

finish() {  # the last line of a test script: the counts, and the exit status (exit_status)
  echo "$passes passed, $failures failed"
  exit_status
}

# ---- What the script needs: a harness error when it is missing. ------------------------------------------------

require_args() {  # require_args MIN USAGE "$@": at least MIN arguments, or a harness error naming the usage
  local min="$1" usage="$2"
  shift 2
  (($# >= min)) || harness_error "expected at least $min arguments, got $#; usage: $usage"
}

require_files() {  # require_files PATH...: each exists
  local path
  for path in "$@"; do
    [[ -e "$path" ]] || harness_error "missing file '$path'"
  done
}

require_executables() {  # require_executables FILE...: each exists and is executable
  local path
  for path in "$@"; do
    [[ -f "$path" && -x "$path" ]] || harness_error "missing or not executable: '$path'"
  done
}

require_commands() {  # require_commands NAME...: each is on PATH
  local name
  for name in "$@"; do
    command -v "$name" >/dev/null 2>&1 || harness_error "command not found: $name"
  done
}

started() {  # started STATUS WHAT: returns STATUS, a harness error when it says WHAT could not start (126, 127)
  if [[ $1 -eq 126 || $1 -eq 127 ]]; then harness_error "$2 could not start (exit $1)"; fi
  return "$1"
}

# ---- Checks. ----------------------------------------------------------------------------------------------------

check() {  # check NAME COMMAND...: ok when COMMAND succeeds, fail otherwise
  local name="$1" status
  shift
  "$@"
  status=$?
  started "$status" "'$1' (check: $name)"
  if [[ $status -eq 0 ]]; then ok "$name"; else fail "$name"; fi
}

# expect_exit CODE PATTERN COMMAND...: runs COMMAND; ok when it exits CODE and its output (stdout and stderr) matches
# the extended regex PATTERN.
expect_exit() {
  local code="$1" pattern="$2" output status
  shift 2
  output="$("$@" 2>&1)"
  status=$?
  [[ $code -eq 126 || $code -eq 127 ]] || started "$status" "'$1'"
  if [[ $status -ne $code ]] || ! grep -qE -- "$pattern" <<<"$output"; then
    fail "'$*' exited $status (expected $code), output should match /$pattern/:"
    echo "$output" | tail -n 5 | sed 's/^/    /'
  else
    ok "exit $code, output matches /$pattern/"
  fi
}

# ---- Checkpoints. -----------------------------------------------------------------------------------------------

ckpt_path() { printf '%s/ckpt-%09d.ddpm' "$1" "$2"; }  # ckpt_path RUN_DIR STEP

newest_ckpt() {  # newest_ckpt RUN_DIR: the path of the newest checkpoint file (nothing when none)
  local files=("$1"/ckpt-*.ddpm)  # fixed-width steps: name order is step order
  if [[ -e "${files[-1]}" ]]; then echo "${files[-1]}"; fi
}

newest_step() {  # newest_step RUN_DIR: the step of the newest checkpoint file (0 when none)
  local newest
  newest="$(newest_ckpt "$1")"
  [[ -z "$newest" ]] && { echo 0; return; }
  newest="${newest##*/ckpt-}"
  echo $((10#${newest%.ddpm}))
}

compare_meaning() {  # compare_meaning STATUS: what an exit status of compare_checkpoints means
  case "$1" in
    0) echo "equal" ;;
    1) echo "different" ;;
    2) echo "usage error" ;;
    3) echo "a file cannot be read or does not verify" ;;
    126 | 127) echo "could not start" ;;
    *) echo "crashed or killed" ;;
  esac
}

# compare_ckpt A B [--prefix P] [--atol X] [--rtol Y]: returns 0 when the tensors are equal (within the tolerance),
# 1 when they differ; COMPARE_OUT holds the tool's report. Anything else is a harness error: a missing file, a
# usage error (2), a file that cannot be read (3), a tool that crashed or could not start. Call it in the script's
# own shell (if, &&, ||), not in $(...) or a pipeline, where a harness error would end only the subshell.
compare_ckpt() {
  (($# >= 2)) || harness_error "compare_ckpt needs two checkpoint files, got: $*"
  [[ -n "${COMPARE:-}" ]] || harness_error "compare_ckpt: COMPARE (the compare_checkpoints binary) is not set"
  local path status
  for path in "$1" "$2"; do
    [[ -f "$path" ]] || harness_error "compare_ckpt: no checkpoint file '$path'"
  done
  COMPARE_OUT="$("$COMPARE" "$@" 2>&1)"
  status=$?
  case $status in
    0 | 1) return "$status" ;;
    *) harness_error "compare_checkpoints $* exited $status ($(compare_meaning "$status")): $COMPARE_OUT" ;;
  esac
}

# verify_ckpt FILE: returns 0 when FILE is a checkpoint that reads and verifies (compare_checkpoints FILE FILE), 1
# when it is missing, damaged or not a checkpoint (exit 3: the result under test); anything else is a harness error.
# VERIFY_OUT holds the tool's report. Same rule as compare_ckpt: not in $(...) or a pipeline.
verify_ckpt() {
  [[ -n "${COMPARE:-}" ]] || harness_error "verify_ckpt: COMPARE (the compare_checkpoints binary) is not set"
  local status
  VERIFY_OUT="$("$COMPARE" "$1" "$1" 2>&1)"
  status=$?
  case $status in
    0) return 0 ;;
    3) return 1 ;;
    *) harness_error "compare_checkpoints $1 $1 exited $status ($(compare_meaning "$status")): $VERIFY_OUT" ;;
  esac
}

expect_same() {  # expect_same WHAT A B [compare flags]: ok when A and B compare equal, fail when they differ
  local what="$1"
  shift
  if compare_ckpt "$@"; then ok "$what: $COMPARE_OUT"; else fail "$what: $COMPARE_OUT"; fi
}

expect_different() {  # expect_different WHAT A B [compare flags]: ok when A and B differ, fail when they compare equal
  local what="$1"
  shift
  if compare_ckpt "$@"; then fail "$what: they compare equal: $COMPARE_OUT"; else ok "$what: $COMPARE_OUT"; fi
}

# ---- Processes. -------------------------------------------------------------------------------------------------

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
