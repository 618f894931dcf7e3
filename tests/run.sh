#!/usr/bin/env bash
# The test command of the README (and of CI): set up, build, run every test with ctest; extra arguments go to ctest.
#   bash tests/run.sh [CTEST_ARGS...]     # e.g. bash tests/run.sh -R Bound
set -euo pipefail
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$REPO_ROOT/launch/setup.sh"
# shellcheck source=../launch/env.sh
source "$REPO_ROOT/launch/env.sh"
ctest --test-dir "${DDPM_BUILD_DIR:-$REPO_ROOT/build}" --output-on-failure -j"$(nproc)" "$@"
