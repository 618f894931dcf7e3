#!/usr/bin/env bash
# The long versions of the reliability tests (the suite runs short ones): 200 kill -9 trials with automatic
# resumes, and 10 million libFuzzer executions per parser under ASan + UBSan. About an hour on 2 cores.
#   bash launch/reliability_long.sh [TRIALS=200] [SEED]
set -euo pipefail
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD="${DDPM_BUILD_DIR:-$REPO_ROOT/build}"
bash "$REPO_ROOT/launch/setup.sh"
source "$REPO_ROOT/launch/env.sh"
export OMP_NUM_THREADS=1 OMPI_MCA_rmaps_base_oversubscribe=1 OMPI_MCA_btl=self,vader
bash "$REPO_ROOT/tests/kill_test.sh" "$BUILD/ddpm" "$BUILD/tests/compare_checkpoints" "$REPO_ROOT" "${1:-200}" ${2:+"$2"}
nice -n 10 bash "$REPO_ROOT/tests/fuzz/fuzz_long.sh"
