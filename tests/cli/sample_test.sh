#!/usr/bin/env bash
# `ddpm sample` at scale, as a user runs it: the .npz and the PNGs hold the same images for 1, 2 and 3 ranks and any
# batch size (ancestral, respaced, DDIM); numpy reads the .npz (arr_0, uint8, N x H x W x C); a job stopped by SIGTERM
# keeps its finished shards and the same command resumes to exactly the images of an uninterrupted job, sampling a
# corrupt shard again; the refusals (an existing output, another request's work folder, --eta without DDIM, steps
# that cannot be met) exit 1 and leave everything as it was; sample and eval print progress lines.
# Usage: sample_test.sh DDPM_BINARY COMPARE_CHECKPOINTS SOURCE_DIR
set -uo pipefail
# shellcheck source=../lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
require_args 3 "sample_test.sh DDPM_BINARY COMPARE_CHECKPOINTS SOURCE_DIR" "$@"
DDPM="$1"
SRC="$3"
# shellcheck source=../../launch/env.sh
source "$SRC/launch/env.sh"
PYTHON="${DDPM_TORCH_ENV:-$HOME/.cache/ddpm/torch-$DDPM_TORCH_VERSION}/bin/python"
require_executables "$DDPM" "$PYTHON"
require_commands mpirun
"$PYTHON" -c "import numpy" 2>/dev/null || harness_error "$PYTHON has no numpy (bash launch/setup.sh installs it)"
COMMON=(--config "$SRC/configs/smoke.yaml" --set "run.dir=$WORK/run" --set diffusion.timesteps=40 --progress plain)

"$DDPM" train "${COMMON[@]}" --set train.steps=4 >"$WORK/train.log" 2>&1 || { tail -5 "$WORK/train.log"; harness_error "training the smoke model failed"; }

# same_images A B: arr_0 of both .npz files bit-identical (exit 0), different (1), unreadable (2: a harness error).
same_images() {
  "$PYTHON" - "$1" "$2" <<'PY'
import sys
import numpy as np
try:
    a, b = (np.load(p)["arr_0"] for p in sys.argv[1:3])
except Exception as e:
    print(f"cannot read: {e}", file=sys.stderr); sys.exit(2)
sys.exit(0 if a.shape == b.shape and a.dtype == b.dtype and np.array_equal(a, b) else 1)
PY
}
expect_same_images() {  # expect_same_images WHAT A B
  same_images "$2" "$3"
  case $? in
    0) ok "$1" ;;
    1) fail "$1: $2 and $3 hold different images" ;;
    *) harness_error "$1: cannot read $2 or $3" ;;
  esac
}
expect_different_images() {  # expect_different_images WHAT A B
  same_images "$2" "$3"
  case $? in
    0) fail "$1: $2 and $3 hold the same images" ;;
    1) ok "$1" ;;
    *) harness_error "$1: cannot read $2 or $3" ;;
  esac
}
sample() { "$DDPM" sample "${COMMON[@]}" --num-images 11 --seed 3 "$@"; }
mpi_sample() { local n="$1"; shift; mpirun --oversubscribe -np "$n" "$DDPM" sample "${COMMON[@]}" --num-images 11 --seed 3 "$@"; }

# ---- The same images for any number of ranks and any batch size. -----------------------------------------------
expect_exit 0 "sampling 11/11 images  [0-9.]+ images/s  took" sample --batch-size 11 --output "$WORK/ref.npz" --png-dir "$WORK/png"
expect_exit 0 "on 2 rank\(s\): 3 shards of 4" mpi_sample 2 --batch-size 4 --output "$WORK/np2.npz"
expect_exit 0 "on 3 rank\(s\): 6 shards of 2" mpi_sample 3 --batch-size 2 --output "$WORK/np3.npz"
expect_same_images "ancestral: 1 rank (batch 11) = 2 ranks (batch 4)" "$WORK/ref.npz" "$WORK/np2.npz"
expect_same_images "ancestral: 1 rank (batch 11) = 3 ranks (batch 2)" "$WORK/ref.npz" "$WORK/np3.npz"
# A batch of all 11 images on 3 ranks: shards of ceil(11 / 3) = 4, so that no rank idles.
expect_exit 0 "on 3 rank\(s\): 3 shards of 4" mpi_sample 3 --batch-size 11 --output "$WORK/np3b.npz"
expect_same_images "ancestral: 3 ranks (batch 11, shards of 4) = 1 rank" "$WORK/ref.npz" "$WORK/np3b.npz"
check "the .npz as numpy reads it: only arr_0, uint8, 11 x 28 x 28 x 1, no work folder left" "$PYTHON" -c '
import sys, os, numpy as np
z = np.load(sys.argv[1]); a = z["arr_0"]
assert list(z.keys()) == ["arr_0"] and a.dtype == np.uint8 and a.shape == (11, 28, 28, 1), (list(z.keys()), a.dtype, a.shape)
assert 0 < a.std(), "blank images"
assert not os.path.exists(sys.argv[1] + ".shards")' "$WORK/ref.npz"
check "one PNG per image, named by index, equal to the .npz" "$PYTHON" -c '
import sys, os, numpy as np
from PIL import Image
a = np.load(sys.argv[1])["arr_0"]
names = sorted(os.listdir(sys.argv[2]))
assert names == ["%06d.png" % i for i in range(11)], names
for i, n in enumerate(names):
    assert np.array_equal(np.asarray(Image.open(os.path.join(sys.argv[2], n))), a[i, :, :, 0]), n' "$WORK/ref.npz" "$WORK/png"

expect_exit 0 "DDIM \(eta 0.00\) over 10 of 40 steps" sample --sampler ddim --steps ddim10 --output "$WORK/ddim1.npz"
expect_exit 0 "wrote" mpi_sample 3 --sampler ddim --steps ddim10 --batch-size 3 --output "$WORK/ddim3.npz"
expect_same_images "DDIM: 1 rank = 3 ranks (batch 3)" "$WORK/ddim1.npz" "$WORK/ddim3.npz"
expect_exit 0 "wrote" sample --sampler ddim --steps ddim10 --batch-size 5 --output "$WORK/ddim1b.npz"
expect_same_images "DDIM eta 0: the same images again (deterministic), batch 5" "$WORK/ddim1.npz" "$WORK/ddim1b.npz"
expect_exit 0 "ancestral over 10 of 40 steps" sample --steps 5,5 --output "$WORK/spaced1.npz"
expect_exit 0 "wrote" mpi_sample 2 --steps 5,5 --batch-size 6 --output "$WORK/spaced2.npz"
expect_same_images "respaced ancestral: 1 rank = 2 ranks" "$WORK/spaced1.npz" "$WORK/spaced2.npz"
expect_exit 0 "wrote" sample --sampler ddim --eta 1 --steps ddim10 --output "$WORK/eta1.npz"
expect_different_images "DDIM eta 1 differs from eta 0" "$WORK/ddim1.npz" "$WORK/eta1.npz"
expect_different_images "respaced ancestral differs from DDIM" "$WORK/spaced1.npz" "$WORK/ddim1.npz"

# ---- Stopped, then resumed: the images of an uninterrupted job. -------------------------------------------------
LONG=(--config "$SRC/configs/smoke.yaml" --set "run.dir=$WORK/run" --set diffusion.timesteps=40 --progress plain
      --num-images 12 --seed 5 --batch-size 2 --output "$WORK/resumed.npz")
"$DDPM" sample "${LONG[@]}" --set diffusion.timesteps=40 >"$WORK/stop.log" 2>&1 &
job=$!
shards="$WORK/resumed.npz.shards"
for _ in $(seq 600); do (($(find "$shards" -name 'shard-*.npz' 2>/dev/null | wc -l) >= 2)) && break; sleep 0.1; done
kill -TERM "$job"
wait "$job"
status=$?
kept=$(find "$shards" -name 'shard-*.npz' | wc -l)
if [[ $status -eq 75 && ! -e "$WORK/resumed.npz" && $kept -ge 2 && $kept -lt 6 ]] &&
  grep -qE "sampling stopped on SIGTERM: $kept of 6 shards done, kept in $shards; the same command resumes" "$WORK/stop.log"; then
  ok "SIGTERM: exit 75, $kept of 6 shards kept, no .npz"
else
  fail "SIGTERM: exit $status, $kept shard(s) kept (expected 2..5), .npz $(test -e "$WORK/resumed.npz" && echo present || echo absent)"
  tail -3 "$WORK/stop.log"
fi
# One kept shard corrupted (a byte of its images flipped): its CRC-32 fails, it is sampled again.
victim=$(find "$shards" -name 'shard-*.npz' | sort | head -n 1)
printf '\xff' | dd of="$victim" bs=1 seek=200 conv=notrunc status=none
expect_exit 0 "warning: shard $victim is sampled again: .*CRC" mpirun --oversubscribe -np 2 "$DDPM" sample "${LONG[@]}"
expect_exit 0 "wrote" mpirun --oversubscribe -np 3 "$DDPM" sample "${COMMON[@]}" --num-images 12 --seed 5 --batch-size 4 --output "$WORK/whole.npz"
expect_same_images "stopped + corrupted + resumed on 2 ranks = uninterrupted on 3 ranks" "$WORK/resumed.npz" "$WORK/whole.npz"

# SIGTERM to one rank of 2 only: that rank tells rank 0, rank 0 tells the other, and both stop within seconds.
# (A model of 1000 steps, so that a shard takes long: tens of seconds.)
SLOW=(--config "$SRC/configs/smoke.yaml" --set "run.dir=$WORK/run1000" --set diffusion.timesteps=1000 --progress plain)
"$DDPM" train "${SLOW[@]}" --set train.steps=2 >"$WORK/train1000.log" 2>&1 || harness_error "training the 1000-step model failed"
mpirun --oversubscribe -np 2 "$DDPM" sample "${SLOW[@]}" --num-images 8 --batch-size 2 --output "$WORK/onerank.npz" \
  >"$WORK/onerank.log" 2>&1 &
job=$!
for _ in $(seq 300); do grep -q "^sampling 8 images" "$WORK/onerank.log" && break; sleep 0.1; done
sleep 1
victim=$(rank_pid "onerank.npz" 1) || harness_error "no process of rank 1 found"
kill -TERM "$victim"
signalled=$SECONDS
wait "$job"
status=$?
elapsed=$((SECONDS - signalled))
if [[ $status -eq 75 && $elapsed -le 10 ]] && grep -q "sampling stopped on another rank's stop request: 0 of 4 shards done" "$WORK/onerank.log"; then
  ok "SIGTERM to rank 1 alone: both ranks stopped, exit 75 after ${elapsed} s"
else
  fail "SIGTERM to rank 1 alone: exit $status after ${elapsed} s (a 1000-step shard takes minutes)"; tail -3 "$WORK/onerank.log"
fi

# ---- Refusals: exit 1, one message, nothing touched. ------------------------------------------------------------
before=$(md5sum "$WORK/ref.npz")
expect_exit 1 "ddpm: error: $WORK/ref.npz exists: it is left alone" sample --output "$WORK/ref.npz"
check "the existing .npz unchanged" test "$(md5sum "$WORK/ref.npz")" = "$before"
mkdir -p "$WORK/other.npz.shards"
"$DDPM" sample "${COMMON[@]}" --num-images 11 --seed 3 --steps 4 --output "$WORK/other.npz" >/dev/null 2>&1 &
job=$!
for _ in $(seq 300); do [[ -e "$WORK/other.npz.shards/manifest.json" ]] && break; sleep 0.05; done
kill -TERM "$job"; wait "$job"
expect_exit 1 "holds the shards of another sampling request: seed \(3 there, 4 in this request\)" \
  "$DDPM" sample "${COMMON[@]}" --num-images 11 --seed 4 --steps 4 --output "$WORK/other.npz"
check "another request's work folder kept" test -f "$WORK/other.npz.shards/manifest.json"
mkdir -p "$WORK/foreign.npz.shards" && touch "$WORK/foreign.npz.shards/mine.txt"
expect_exit 1 "foreign.npz.shards exists and has no manifest.json: it is not ddpm's" sample --output "$WORK/foreign.npz"
check "a foreign folder untouched" test -f "$WORK/foreign.npz.shards/mine.txt"
mkdir -p "$WORK/garbled.npz.shards" && echo '{"shard_size": "many"' >"$WORK/garbled.npz.shards/manifest.json"
expect_exit 1 "garbled.npz.shards/manifest.json is not a sampling manifest .*remove the folder" sample --output "$WORK/garbled.npz"
check "a garbled manifest left as it was" grep -q many "$WORK/garbled.npz.shards/manifest.json"
expect_exit 1 "ddpm: error: --eta is DDIM's: add --sampler ddim" sample --eta 0.5 --output "$WORK/x.npz"
expect_exit 1 "ddpm: error: --steps: sampling steps 'ddim39': no integer stride gives exactly 39 of 40 steps" \
  sample --steps ddim39 --output "$WORK/x.npz"
expect_exit 1 "ddpm: error: --steps: sampling steps '50': section 1 has 40 steps, fewer than the 50 asked" \
  sample --steps 50 --output "$WORK/x.npz"
expect_exit 1 "ddpm: error: --output $WORK/x.jpg: expected an .npz \(all images\) or a .png \(a grid\)" sample --output "$WORK/x.jpg"
expect_exit 1 "a PNG grid of 5000 images \(at most 4096\)" "$DDPM" sample "${COMMON[@]}" --num-images 5000 --output "$WORK/x.png"
check "no output of a refused command" bash -c "! ls '$WORK'/x.* 2>/dev/null | grep -q ."

# ---- Progress of evaluation, respaced bound. --------------------------------------------------------------------
expect_exit 0 "evaluating [0-9.]+/4 images  [0-9.]+ images/s  (ETA|took)" "$DDPM" eval "${COMMON[@]}" --num-images 4 --steps 10 --output "$WORK/e10.json"
check "the respaced bound's report: 10 terms of 40" "$PYTHON" -c '
import json, sys
r = json.load(open(sys.argv[1]))
assert r["timesteps"] == 10 and r["trained_timesteps"] == 40 and len(r["per_t_bpd"]) == 10 and r["steps"] == "10", r
assert r["kept_timesteps"][0] == 0 and r["kept_timesteps"][-1] == 39, r["kept_timesteps"]' "$WORK/e10.json"
finish
