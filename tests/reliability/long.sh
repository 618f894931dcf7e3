#!/usr/bin/env bash
# The long versions of the reliability tests (the suite runs short ones): 200 kill -9 trials with automatic
# resumes (about 40 minutes on the 2-core CPU box), and 10 million libFuzzer executions per parser under ASan +
# UBSan (one core-hour and a half for the config loader at about 1,700 executions/s, one for the image reader at
# about 3,000/s, minutes for the others). Several hours on 2 cores.
#   bash tests/reliability/long.sh [TRIALS=200] [SEED]
set -euo pipefail
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
BUILD="${DDPM_BUILD_DIR:-$REPO_ROOT/build}"
bash "$REPO_ROOT/launch/setup.sh"
# shellcheck source=../../launch/env.sh
source "$REPO_ROOT/launch/env.sh"
export OMP_NUM_THREADS=1 OMPI_MCA_rmaps_base_oversubscribe=1 OMPI_MCA_btl=self,vader
bash "$REPO_ROOT/tests/reliability/kill_test.sh" "$BUILD/ddpm" "$BUILD/tests/compare_checkpoints" "$REPO_ROOT" "${1:-200}" ${2:+"$2"}
nice -n 10 bash "$REPO_ROOT/tests/fuzz/fuzz_long.sh"
