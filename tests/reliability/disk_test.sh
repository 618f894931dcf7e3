#!/usr/bin/env bash
# A checkpoint that cannot be written, for real: (1) the disk fills up during the write (a small tmpfs, in a
# private mount namespace), (2) the run directory turns read-only while the job runs. Each must end the job with
# a clear error naming the file and the cause, a non-zero exit, no temp file left, the previous checkpoint
# intact; and once there is room again the run resumes from that checkpoint.
# Needs root with CAP_SYS_ADMIN for the mount namespace (CI has it); exits 77 (ctest: skipped) otherwise.
# Usage: disk_test.sh DDPM COMPARE_CHECKPOINTS SOURCE_DIR
set -uo pipefail

if [[ "${DISK_TEST_IN_NAMESPACE:-}" != 1 ]]; then
  if ! unshare -m true 2>/dev/null; then
    echo "skipped: cannot create a mount namespace here (needs root with CAP_SYS_ADMIN)"
    exit 77
  fi
  exec env DISK_TEST_IN_NAMESPACE=1 unshare -m --propagation private bash "$0" "$@"
fi

# shellcheck source=../lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
require_args 3 "disk_test.sh DDPM COMPARE_CHECKPOINTS SOURCE_DIR" "$@"
DDPM="$1"
COMPARE="$2"
SRC="$3"
require_executables "$DDPM" "$COMPARE"
require_files "$SRC/configs/smoke.yaml"
require_commands mpirun mount umount setpriv
# shellcheck disable=SC2016  # expanded on exit, by the lib's trap
EXTRA_CLEANUP='umount "$WORK/small" 2>/dev/null; chmod -R u+w "$WORK" 2>/dev/null'
train() {  # train RUN_DIR STEPS: 2 ranks, a checkpoint every 2 steps
  mpirun --oversubscribe -np 2 "$DDPM" train --config "$SRC/configs/smoke.yaml" --progress plain --set "run.dir=$1" \
    --set "train.steps=$2" --set train.log_every=1 --set train.checkpoint_every=2 --set diffusion.timesteps=50 \
    --set monitoring.eval_every=0
}
expect_failed_write() {  # expect_failed_write LOG STATUS RUN_DIR CAUSE: the job's end after a failed checkpoint write
  local log="$1" status="$2" dir="$3" cause="$4"
  [[ $status -ne 0 ]] && ok "$cause: exit $status" || fail "$cause: the job exited 0"
  # The temp file (create, write) or, when the directory turned read-only between the write and the rename, the
  # final name (rename).
  if grep -q "ddpm: error (rank 0 on [^)]*): checkpoint at step [0-9]* failed: checkpoint $dir/\.\?ckpt-[0-9]*\.ddpm[.0-9tmp]*: .*$cause" "$log"; then
    ok "$cause: the error names the checkpoint file and the cause: $(grep -m1 -o "checkpoint at step.*" "$log")"
  else
    fail "$cause: no clear error"; grep "error" "$log" | head -n 5
  fi
  local newest
  newest="$(ckpt_path "$dir" "$(newest_step "$dir")")"
  if verify_ckpt "$newest"; then
    ok "$cause: the previous checkpoint $(basename "$newest") verifies"
  else
    fail "$cause: the previous checkpoint '$newest' is missing or damaged: $VERIFY_OUT"
  fi
}

# 1. Disk full: room for one checkpoint (about 11 MB) and the logs, not for a second one.
mkdir -p "$WORK/small"
mount -t tmpfs -o size=16m tmpfs "$WORK/small" || harness_error "cannot mount a 16 MB tmpfs on $WORK/small"
train "$WORK/small/run" 4 >"$WORK/full.log" 2>&1
expect_failed_write "$WORK/full.log" $? "$WORK/small/run" "No space left on device"
[[ -z "$(find "$WORK/small/run" -name '.ckpt-*.tmp')" ]] && ok "disk full: the temp file was removed" || fail "disk full: temp file left"
mount -o remount,size=64m "$WORK/small" || harness_error "cannot grow the tmpfs on $WORK/small to 64 MB"
train "$WORK/small/run" 4 >"$WORK/full_resume.log" 2>&1 && grep -q "resumed at step 2 from" "$WORK/full_resume.log" &&
  ok "with room again, resumed at step 2 and finished" || { fail "no resume after the disk was freed"; tail -n 5 "$WORK/full_resume.log"; }

# 2. The run directory turns read-only while the job runs (root bypasses permissions, so the job runs without
#    CAP_DAC_OVERRIDE, like any user's job).
RUN="$WORK/ro/run"
setpriv --bounding-set -dac_override,-dac_read_search env -- bash -c "$(declare -f train); DDPM='$DDPM' SRC='$SRC' train '$RUN' 1000" \
  >"$WORK/ro.log" 2>&1 &
job=$!
for _ in $(seq 600); do
  [[ -f "$(ckpt_path "$RUN" 2)" ]] && break
  sleep 0.05
done
chmod a-w "$RUN"
wait "$job"
expect_failed_write "$WORK/ro.log" $? "$RUN" "Permission denied"
chmod u+w "$RUN"
step=$(newest_step "$RUN")
train "$RUN" $((step + 2)) >"$WORK/ro_resume.log" 2>&1 && grep -q "resumed at step $step from" "$WORK/ro_resume.log" &&
  ok "writable again: resumed at step $step and finished" || { fail "no resume"; tail -n 5 "$WORK/ro_resume.log"; }
# A read-only directory may keep a temp file it could not delete; the next start removes it.
[[ -z "$(find "$RUN" -name '.ckpt-*.tmp')" ]] && ok "read-only: no temp file left after the resume" || fail "read-only: temp file left"

finish
