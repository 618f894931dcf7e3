#!/usr/bin/env bash
# launch/gpu/rows.sh, the clock of the GPU run, with stand-in commands: a row that passes, one that fails, one that
# outlives its cap (its child processes stopped with it), one that exits 0 without a report, one skipped for want of
# time, the rows kept from an earlier run, the mirror copy; run.sh's and bench.sh's refusals of bad settings; then
# launch/gpu/results_table.py over the result.
# Usage: rows_test.sh SOURCE_DIR
set -uo pipefail
# shellcheck source=../lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
require_args 1 "rows_test.sh SOURCE_DIR" "$@"
SRC="$1"
require_files "$SRC/launch/gpu/rows.sh" "$SRC/launch/gpu/results_table.py"
require_commands python3 timeout
# shellcheck source=../../launch/gpu/rows.sh
source "$SRC/launch/gpu/rows.sh"
status_of() { rows_field "$1" "$2"; }  # status_of FILE NAME
field_of() { rows_field "$@"; }        # field_of FILE NAME EXPRESSION: of the row r

export ROWS_MIRROR="$WORK/mirror.jsonl" ROWS_LOGS="$WORK/logs"
: >"$ROWS_MIRROR"
marker="rows-test-$$"
rows_begin "$WORK/first.jsonl" 60 >"$WORK/first.out"
{
  rows_phase checks 8
  row check.ok 1 10 bash -c 'echo "some output"; echo "{\"ok\": true, \"distance\": 0.01}"'
  row check.fails 1 10 bash -c 'echo "the last words"; echo "{\"ok\": false}"; exit 1'
  row check.slow 1 2 bash -c "sleep 30 && echo $marker & wait"
  row check.no_report 1 10 bash -c 'echo "no JSON here"'
  row check.too_long 100 200 bash -c 'echo "{\"ok\": true}"'
  rows_phase ours 30
  row bench.shipped 1 10 bash -c 'echo "{\"name\": \"ddpm as shipped (bf16, channels-last, fused Adam)\", \"report\": {\"images_per_second\": 100.0, \"ms_per_step\": 1.28, \"batch\": 128}}"'
  rows_end
} >>"$WORK/first.out" 2>&1
code=$?
check "rows_end fails a run with failed or stopped rows" test "$code" -ne 0
for pair in check.ok=ok check.fails=failed check.slow=timeout check.no_report=failed check.too_long=skipped bench.shipped=ok; do
  check "row ${pair%%=*} is ${pair#*=}" test "$(status_of "$WORK/first.jsonl" "${pair%%=*}")" = "${pair#*=}"
done
check "a row's report is its last JSON line" test "$(field_of "$WORK/first.jsonl" check.ok 'r["report"]["distance"]')" = 0.01
check "a failed row carries its output's last lines" grep -q "the last words" <<<"$(field_of "$WORK/first.jsonl" check.fails 'r["log_tail"]')"
check "a stopped row says after how long" grep -q "stopped after 2 s" <<<"$(field_of "$WORK/first.jsonl" check.slow 'r["reason"]')"
check "a stopped row stops within its cap" test "$(field_of "$WORK/first.jsonl" check.slow 'int(r["seconds"] < 10)')" = 1
# "[s]leep" matches the stand-in's command line, not this one's.
check "the stopped row's children are gone" bash -c '! pgrep -f "$0" >/dev/null' "[s]leep 30 && echo $marker"
check "a row without a report says so" grep -q "without a JSON report" <<<"$(field_of "$WORK/first.jsonl" check.no_report 'r["reason"]')"
check "a skipped row says what it lacked" grep -q "needs about 100 s" <<<"$(field_of "$WORK/first.jsonl" check.too_long 'r["reason"]')"
check "a row is its phase's" test "$(field_of "$WORK/first.jsonl" bench.shipped 'r["phase"]')" = ours
check "the mirror holds every line" cmp -s "$WORK/first.jsonl" "$ROWS_MIRROR"
check "rows_end names what did not pass" grep -q "timeout: check.slow (stopped after 2 s)" "$WORK/first.out"

# A rerun: the rows that were ok are kept, the others run again (here they pass).
rows_begin "$WORK/second.jsonl" 60 "$WORK/first.jsonl" >"$WORK/second.out"
{
  rows_phase checks 30
  row check.ok 1 10 bash -c 'echo ran >"$0"' "$WORK/ran_again"
  row check.fails 1 10 bash -c 'echo "{\"ok\": true}"'
  rows_end
} >>"$WORK/second.out" 2>&1
code=$?
check "a rerun whose rows pass passes" test "$code" -eq 0
check "an ok row of the earlier run is kept" test "$(status_of "$WORK/second.jsonl" check.ok)" = kept
check "a kept row is not run again" test ! -e "$WORK/ran_again"
check "a kept row keeps its report" test "$(field_of "$WORK/second.jsonl" check.ok 'r["report"]["distance"]')" = 0.01
check "a failed row runs again" test "$(status_of "$WORK/second.jsonl" check.fails)" = ok

# The command's own settings: a bad value is refused before anything runs.
expect_exit 2 "GPU_RUN_LIMIT must be a number of seconds, not 'soon'" env GPU_RUN_LIMIT=soon OUT="$WORK/out" bash "$SRC/launch/gpu/run.sh"
expect_exit 2 "GPU_RUN_STOP must be built or first-gpu-call, not 'later'" env GPU_RUN_STOP=later OUT="$WORK/out" bash "$SRC/launch/gpu/run.sh"
check "a refused run writes nothing" test ! -e "$WORK/out"
expect_exit 2 "BENCH_PART must be all or sampling, not 'ours'" env BENCH_PART=ours bash "$SRC/launch/bench/bench.sh" cpu

# The table of a run, from these rows.
python3 "$SRC/launch/gpu/results_table.py" "$WORK/first.jsonl" >"$WORK/table.txt" 2>&1
check "results_table.py reads the rows" test $? -eq 0
check "the table lists every check with its status" grep -Eq "^check.slow +timeout" "$WORK/table.txt"
check "the table has the benchmark's row" grep -q "ddpm as shipped (bf16, channels-last, fused Adam)" "$WORK/table.txt"
check "the table counts the rows" grep -q "rows: 2 failed, 2 ok, 1 skipped, 1 timeout" "$WORK/table.txt"
finish
