#!/usr/bin/env bash
# The correctness checks of the fast GPU step that only a GPU can run, each a short `ddpm train` of the smoke
# model on real Fashion-MNIST images (the test split) on the first GPU, compared with the plain run:
#   graph   train.cuda_graph: true (the step captured once, replayed)
#   reduce  the NCCL all-reduce at world size 1 (distributed.always_reduce: true)
#   bf16    bf16 autocast instead of fp32
# and that a step never makes the host wait for the GPU: short runs with the shipped config's speed options under
# `ddpm train --sync-check` (a synchronizing CUDA call inside a step is an error), eager, with the NCCL all-reduce
# at world size 1 (whose loss curve is also compared with the eager one's: the bucketed path's gradient views
# with bf16, channels-last weights and the fused Adam), and with the step captured in a CUDA graph.
# GPU kernels are not bit-reproducible from run to run (atomics, cuDNN's algorithm choices), so each pair is
# compared by its loss curves (every logged mean loss) and final weights, next to the difference between two
# plain runs (the noise floor), which is printed too. Fails when a curve strays more than the tolerance, or the
# plain run does not learn.
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
  # The gradient views of the bucketed path with the shipped options (bf16, channels-last weights, fused Adam).
  if [[ ! " ${sync_failures[*]} " =~ " sync_eager " && ! " ${sync_failures[*]} " =~ " sync_reduce " ]]; then
    "$PYTHON" "$WORK/curves.py" "$WORK" sync_eager sync_reduce || curves=$?
  fi
fi
[[ ${#sync_failures[@]} -eq 0 ]] || echo "FAIL: a step made the host wait for the GPU in: ${sync_failures[*]}"
[[ $curves -eq 0 && ${#sync_failures[@]} -eq 0 ]]
