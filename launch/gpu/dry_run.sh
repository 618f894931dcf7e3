#!/usr/bin/env bash
# Here, before any device time: launch/gpu/run.sh on a copy of what the device tool sends (the checkout's tracked
# and untracked-not-ignored files, and .cache/gpu, the one carried path), with a fresh package prefix, up to its
# first call that needs a GPU. It passes when
#   - what travels fits the tool's 64 MiB;
#   - run.sh unpacks the packages, and takes the binaries prepare.sh built (no build on the GPU machine) and finds
#     every library they need in the prefix or the torch install (beyond the C and C++ runtimes);
#   - those binaries, with the relocated Open MPI, train a few CPU steps of the smoke model on the carried data
#     (`ddpm bench` on the CPU: MPI, the config, the data loader, the trainer);
#   - the first GPU rows fail only for want of a GPU: machine.py finds no CUDA device, and check.smoke_plain stops
#     at ddpm's "no CUDA device is visible".
#   bash launch/gpu/dry_run.sh      after bash launch/gpu/prepare.sh; PYTHON: the python3 with torch (default the
#                                   torch environment of launch/setup.sh, the GPU machine's torch version)
set -euo pipefail
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
# shellcheck source=../env.sh
source "$REPO_ROOT/launch/env.sh"
PYTHON="${PYTHON:-${DDPM_TORCH_ENV:-$HOME/.cache/ddpm/torch-$DDPM_TORCH_VERSION}/bin/python}"
[[ -d "$REPO_ROOT/.cache/gpu/bin" ]] || { echo "dry_run: no .cache/gpu/bin: run launch/gpu/prepare.sh first" >&2; exit 1; }
COPY="$(mktemp -d)"
trap 'rm -rf "$COPY"' EXIT
failed=0
fail() { echo "dry run: FAIL: $*"; failed=1; }

# What travels: the device tool's rule (tracked and untracked-not-ignored files), and the carried path.
(cd "$REPO_ROOT" && git ls-files -z --cached --others --exclude-standard | xargs -0 -I{} cp --parents -P {} "$COPY/" 2>/dev/null || true)
mkdir -p "$COPY/.cache" && cp -a "$REPO_ROOT/.cache/gpu" "$COPY/.cache/"
bytes="$(du -sb "$COPY" | cut -f1)"
echo "dry run: $((bytes / 1024 / 1024)) MiB travel (the device tool's limit: 64 MiB)"
((bytes <= 64 * 1024 * 1024)) || fail "$bytes bytes would travel, over 64 MiB"

out="$COPY/out"
code=0
GPU_RUN_STOP=first-gpu-call GPU_RUN_PREFIX="$COPY/prefix" OUT="$out" PYTHON="$PYTHON" CUDA_VISIBLE_DEVICES="" \
  bash "$COPY/launch/gpu/run.sh" >/dev/null 2>&1 || code=$?
echo "dry run: run.sh exited $code; its log:"
sed 's/^/  | /' "$out/run.log" | tail -n 40
grep -q "the binaries prepare.sh built" "$out/run.log" ||
  fail "run.sh would build ddpm on the GPU machine (minutes of device time): run launch/gpu/prepare.sh again"
! grep -q "libraries from the machine itself" "$out/run.log" ||
  fail "a library comes from this machine, not from the carried packages or torch (add its package to prepare.sh)"
# shellcheck source=rows.sh
source "$REPO_ROOT/launch/gpu/rows.sh"
status() { rows_field "$out/results.jsonl" "$@"; }  # status NAME [EXPRESSION of its row r]
if [[ -f "$out/results.jsonl" ]]; then
  [[ "$(status dry.cpu_steps)" == ok ]] || fail "the binaries did not train on the CPU with the relocated packages (row dry.cpu_steps)"
  [[ "$(status machine 'r.get("report", {}).get("cuda_available")')" == False ]] ||
    fail "machine.py did not fail for want of a CUDA device"
  [[ "$(status check.smoke_plain 'int("no CUDA device is visible" in r.get("log_tail", ""))')" == 1 ]] ||
    fail "check.smoke_plain did not stop at ddpm's 'no CUDA device is visible'"
else
  fail "run.sh wrote no results.jsonl"
fi
[[ $failed == 0 ]] || exit 1
echo "dry run: ok: the command reaches its first GPU call (machine.py, then ddpm train on cuda) with the carried binaries"
