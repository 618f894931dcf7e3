#!/usr/bin/env bash
# The correctness checks of the fast GPU step that only a GPU can run, each a short `ddpm train` of the smoke
# model on real Fashion-MNIST images (the test split) on the first GPU, compared with the plain run:
#   graph   train.cuda_graph: true (the step captured once, replayed)
#   reduce  the NCCL all-reduce at world size 1 (distributed.always_reduce: true)
#   bf16    bf16 autocast instead of fp32
# and that a step never makes the host wait for the GPU: short runs with the shipped config's speed options under
# `ddpm train --sync-check` (a synchronizing CUDA call inside a step is an error), eager, with the NCCL all-reduce
# at world size 1 (whose loss curve is also compared with the eager one's: the bucketed path's gradient views
# with bf16, channels-last weights and the fused Adam), with the step captured in a CUDA graph, and the
# improved-DDPM step (learned_range, hybrid, loss_second_moment) eager and captured.
# GPU kernels are not bit-reproducible from run to run (atomics, cuDNN's algorithm choices), so each pair is
# compared by its loss curves (every logged mean loss) and final weights, next to the difference between two
# plain runs (the noise floor), which is printed too. Fails when a curve strays more than the tolerance, or the
# plain run does not learn. Then sampling from the plain run's weights, the CUDA graph against the eager step and
# one batch size against another (the same images up to a level in 1% of the pixels), with each run's images/s.
#   bash launch/gpu/gpu_check.sh DATA_DIR    # DATA_DIR holds t10k-images-idx3-ubyte.gz and t10k-labels-idx1-ubyte.gz
# Environment: DDPM (default build/ddpm), COMPARE (compare_checkpoints; default build/tests/compare_checkpoints),
# PYTHON (default python3), GPU_CHECK_STEPS (default 300), GPU_CHECK_BATCH (default 32), GPU_CHECK_DEVICE (default cuda; cpu checks this script:
# no graph row, the MPI all-reduce).
set -euo pipefail
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
DATA="${1:?usage: gpu_check.sh DATA_DIR}"
DDPM="${DDPM:-$REPO_ROOT/build/ddpm}"
COMPARE="${COMPARE:-$REPO_ROOT/build/tests/compare_checkpoints}"
PYTHON="${PYTHON:-python3}"
STEPS="${GPU_CHECK_STEPS:-300}"
DEVICE="${GPU_CHECK_DEVICE:-cuda}"
BATCH="${GPU_CHECK_BATCH:-32}"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

run() {  # run NAME [--set ...]
  local name="$1"
  shift
  echo "== gpu_check: $name $*"
  "$DDPM" train --config "$REPO_ROOT/configs/smoke.yaml" --set "run.device=$DEVICE" --set "run.dir=$WORK/$name" \
    --set "data.path=$DATA" --set data.split=test --set "train.batch_size=$BATCH" --set "train.steps=$STEPS" \
    --set train.log_every=25 --set "train.checkpoint_every=$STEPS" --set monitoring.enabled=false \
    --set monitoring.eval_every=0 "$@" | tail -n 2
}
PAIRS=(plain_again reduce bf16)
run plain
run plain_again
if [[ "$DEVICE" == cuda ]]; then
  PAIRS+=(graph)
  run graph --set train.cuda_graph=true
  run reduce --set distributed.backend=nccl --set distributed.always_reduce=true
else  # a check of this script on a CPU: no graph, the MPI all-reduce
  run reduce --set distributed.backend=mpi --set distributed.always_reduce=true
fi
run bf16 --set train.precision=bf16

checkpoint="$(printf 'ckpt-%09d.ddpm' "$STEPS")"  # trainer/checkpoint.cpp's checkpoint_file_name()
for name in "${PAIRS[@]}"; do
  echo "weights, $name against plain: $("$COMPARE" "$WORK/$name/$checkpoint" "$WORK/plain/$checkpoint" --atol 1e9 | tail -n 1)"
done
cat >"$WORK/curves.py" <<'PY'
# curves.py WORK REFERENCE NAME...: each run's loss curve against the reference run's, next to the noise floor of
# two plain runs; with REFERENCE plain, also that the plain run learns.
import json, os, sys
work, reference, names = sys.argv[1], sys.argv[2], sys.argv[3:]
def curve(name):
    with open(os.path.join(work, name, "train_log.jsonl")) as f:
        return [(r["step"], r["loss"]) for r in map(json.loads, f)]
def distance(a, b):  # the largest relative difference of two loss curves, over the logged steps
    return max(abs(x[1] - y[1]) / y[1] for x, y in zip(a, b))
plain = curve("plain")
floor = distance(curve("plain_again"), plain)
failed = False
if reference == "plain":
    print(f"plain run: loss {plain[0][1]:.4f} at step {plain[0][0]} -> {plain[-1][1]:.4f} at step {plain[-1][0]}")
    print(f"noise floor (two plain runs): curves differ by at most {floor:.2%}")
    failed = plain[-1][1] > 0.5 * plain[0][1]
    if failed:
        print("FAIL: the plain run did not learn (final loss above half the first)")
# bf16 rounds differently from fp32; the NCCL path at world size 1 adds no rounding of its own, so against a bf16
# reference it gets bf16's own run-to-run tolerance.
tolerances = {"graph": 0.05, "reduce": 0.05, "bf16": 0.15, "sync_reduce": 0.15}
for name in names:
    tolerance = max(tolerances[name], 2 * floor)
    d = distance(curve(name), curve(reference))
    ok = d <= tolerance
    failed |= not ok
    print(f"{name}: curve differs from {reference} by at most {d:.2%} (tolerance {tolerance:.0%}): {'ok' if ok else 'FAIL'}")
sys.exit(1 if failed else 0)
PY
curves=0
"$PYTHON" "$WORK/curves.py" "$WORK" plain "${PAIRS[@]:1}" || curves=$?

# After the comparisons above, so that a stop at the time limit of launch/gpu/gpu_session.sh leaves them printed.
sync_failures=()
sync_run() {  # sync_run NAME [--set ...]: 50 steps under --sync-check; a failure is reported and counted, not fatal
  local name="sync_$1"
  shift
  if run "$name" --sync-check --set train.precision=bf16 --set train.channels_last=true --set train.fused_adam=true \
    --set train.steps=50 --set train.checkpoint_every=50 "$@" >"$WORK/$name.out" 2>&1; then
    echo "sync check, $name: ok (50 steps, no host wait inside a step)"
  else
    sync_failures+=("$name")
    echo "FAIL: sync check, $name:"
    grep -m1 -A30 "ddpm: error" "$WORK/$name.out" || tail -n 12 "$WORK/$name.out"
  fi
}
if [[ "$DEVICE" == cuda ]]; then
  sync_run eager
  sync_run reduce --set distributed.backend=nccl --set distributed.always_reduce=true
  sync_run graph --set train.cuda_graph=true
  # The improved-DDPM step (2C outputs, the hybrid's frozen-mean term, the importance sampler's device-side draw and
  # history update) eager and captured: no host wait, and capturable (T = 25 so that the history fills in the run).
  IMPROVED=(--set diffusion.model_variance=learned_range --set diffusion.loss=hybrid
            --set train.timestep_sampler=loss_second_moment --set diffusion.timesteps=25)
  sync_run improved "${IMPROVED[@]}"
  sync_run improved_graph "${IMPROVED[@]}" --set train.cuda_graph=true
  # The gradient views of the bucketed path with the shipped options (bf16, channels-last weights, fused Adam).
  if [[ ! " ${sync_failures[*]} " =~ " sync_eager " && ! " ${sync_failures[*]} " =~ " sync_reduce " ]]; then
    "$PYTHON" "$WORK/curves.py" "$WORK" sync_eager sync_reduce || curves=$?
  fi
fi
[[ ${#sync_failures[@]} -eq 0 ]] || echo "FAIL: a step made the host wait for the GPU in: ${sync_failures[*]}"

# Sampling from the plain run's weights: the step replayed from a CUDA graph against the eager step, and another
# batch size against the first, for respaced ancestral (50 of T = 100 steps) and DDIM (ddim25) sampling. GPU kernels
# round differently for other batch sizes, so images may differ by a level in a few pixels; the graph replays the
# eager step's kernels. The images/s of each run are printed (the GPU issue's sampling rows).
cat >"$WORK/images.py" <<'PY'
# images.py A.npz B.npz LABEL: arr_0 of both (uint8, stored as ddpm writes it) compared pixel by pixel.
import struct, sys, zipfile
def pixels(path):
    with zipfile.ZipFile(path) as z:
        raw = z.read("arr_0.npy")
    size = struct.unpack("<H", raw[8:10])[0] if raw[6] == 1 else struct.unpack("<I", raw[8:12])[0]
    return raw[(10 if raw[6] == 1 else 12) + size:]
a, b = pixels(sys.argv[1]), pixels(sys.argv[2])
if len(a) != len(b):
    print(f"{sys.argv[3]}: FAIL: {len(a)} against {len(b)} bytes"); sys.exit(1)
differing = sum(x != y for x, y in zip(a, b))
largest = max((abs(x - y) for x, y in zip(a, b)), default=0)
ok = largest <= 1 and differing <= 0.01 * len(a)
print(f"{sys.argv[3]}: {differing} of {len(a)} pixels differ, by at most {largest}: {'ok' if ok else 'FAIL'}")
sys.exit(0 if ok else 1)
PY
sampling=0
sample() {  # sample NAME [ddpm sample arguments...]: 16 images from the plain run, their images/s printed
  local name="$1"
  shift
  "$DDPM" sample --config "$REPO_ROOT/configs/smoke.yaml" --set "run.device=$DEVICE" --set "run.dir=$WORK/plain" \
    --set "data.path=$DATA" --num-images 16 --output "$WORK/$name.npz" \
    --progress plain "$@" >"$WORK/$name.out" 2>&1 ||
    { echo "FAIL: sampling, $name:"; tail -n 12 "$WORK/$name.out"; return 1; }
  echo "sampling, $name: $(grep -o '[0-9.]* images/s  took [0-9]*s' "$WORK/$name.out" | tail -n 1)"
}
# The smoke config's T = 100: 50 respaced ancestral steps, and DDIM over 25.
for sampler in "ancestral --steps 50" "ddim --steps ddim25"; do
  kind="${sampler%% *}"
  # shellcheck disable=SC2086
  sample "${kind}_eager" --sampler $sampler --batch-size 16 --set train.cuda_graph=false || { sampling=1; continue; }
  # shellcheck disable=SC2086
  if sample "${kind}_batch5" --sampler $sampler --batch-size 5 --set train.cuda_graph=false; then
    "$PYTHON" "$WORK/images.py" "$WORK/${kind}_eager.npz" "$WORK/${kind}_batch5.npz" "sampling, $kind: batch 5 against 16" || sampling=1
  else
    sampling=1
  fi
  if [[ "$DEVICE" == cuda ]]; then
    # shellcheck disable=SC2086
    if sample "${kind}_graph" --sampler $sampler --batch-size 16 --set train.cuda_graph=true; then
      "$PYTHON" "$WORK/images.py" "$WORK/${kind}_eager.npz" "$WORK/${kind}_graph.npz" "sampling, $kind: CUDA graph against eager" || sampling=1
    else
      sampling=1
    fi
  fi
done
[[ $sampling -eq 0 ]] || echo "FAIL: a sampling check"
[[ $curves -eq 0 && ${#sync_failures[@]} -eq 0 && $sampling -eq 0 ]]
