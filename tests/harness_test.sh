#!/usr/bin/env bash
# The harness itself (tests/lib.sh): a failed check exits 1, a harness error (also from a subshell, or a compare tool
# that errs) exits 2, a script with no check exits 2, and a compare's 0/1 reach the script as equal/different.
# Usage: harness_test.sh (no arguments; runs small scripts against a fake compare tool)
set -uo pipefail
LIB="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/lib.sh"
SCRATCH="$(mktemp -d)"
trap 'rm -rf "$SCRATCH"' EXIT
printf '#!/bin/sh\nexit "$FAKE_STATUS"\n' >"$SCRATCH/compare" && chmod +x "$SCRATCH/compare"
touch "$SCRATCH/a.ddpm" "$SCRATCH/b.ddpm"
bad=0
# expect STATUS BODY: a script sourcing the harness and running BODY exits STATUS.
expect() {
  printf 'source "%s"\nCOMPARE=%s\n%s\n' "$LIB" "$SCRATCH/compare" "$2" >"$SCRATCH/t.sh"
  bash "$SCRATCH/t.sh" >"$SCRATCH/out" 2>&1
  local status=$?
  if [[ $status -eq $1 ]]; then echo "ok: exit $1: $2"; else echo "FAIL: exit $status, not $1: $2"; sed 's/^/  /' "$SCRATCH/out"; bad=1; fi
}
A="$SCRATCH/a.ddpm" B="$SCRATCH/b.ddpm"
expect 0 'ok one; finish'
expect 1 'ok one; fail two; finish'
expect 2 'finish'                                                    # no check ran
expect 2 'ok one; harness_error broken; ok never'
expect 2 'ok one; ( harness_error "in a subshell" ); finish'         # recorded, and finish exits 2
expect 2 'ok one; skipped="3 5"; finish'                             # a script variable clashing with the counter
expect 0 "FAKE_STATUS=0 expect_same w $A $B; finish"
expect 1 "FAKE_STATUS=1 expect_same w $A $B; finish"                  # a difference is a failed check
expect 0 "FAKE_STATUS=1 expect_different w $A $B; finish"
expect 2 "FAKE_STATUS=2 expect_same w $A $B; finish"                  # the tool refused its arguments
expect 2 "FAKE_STATUS=3 expect_same w $A $B; finish"                  # it could not read a file
expect 2 "FAKE_STATUS=0 expect_same w $A $SCRATCH/missing.ddpm; finish"
exit $bad
