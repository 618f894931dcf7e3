#!/usr/bin/env bash
# The correctness checks only a GPU can run, one a call (launch/gpu/run.sh makes each a row of its run):
#   bash launch/gpu/gpu_check.sh CHECK
# Each prints what it measured and, last, one JSON line with "ok"; exits 0 when the check holds, 1 when not, 2 on
# a usage error. Runs are kept in GPU_CHECK_WORK: a check that compares with the plain run reuses it, or makes it.
#
# The smoke model (configs/smoke.yaml) on real images, Fashion-MNIST's test split, GPU_CHECK_STEPS steps:
#   smoke_plain        fp32, NCHW, eager: it learns (the reference of the checks below)
#   smoke_floor        the plain run again: the distance of two runs' loss curves, the noise floor
#   smoke_shipped      bf16 autocast, channels-last, fused Adam: curve within 15% of plain (or twice the floor)
#   smoke_graph        train.cuda_graph (the step captured once, replayed): within 5%
#   smoke_nccl         the NCCL all-reduce at world size 1 (distributed.always_reduce): within 5%
#   nccl_bitwise       with train.deterministic, GPU_CHECK_BITWISE_STEPS steps: two plain runs bit-identical
#                      (weights), and the NCCL all-reduce at world size 1 bit-identical to them (a sum over one rank,
#                      divided by 1, adds no rounding), and the captured step too (reported, not required: the
#                      graph's dropout draws need not be the eager step's)
# 50 steps under `ddpm train --sync-check` (a call inside a step that makes the host wait for the GPU is an error)
# with the shipped speed options (bf16, channels-last, fused Adam):
#   sync_eager  sync_nccl (and its curve within 15% of sync_eager's)  sync_graph
#   sync_improved  sync_improved_graph   the improved-DDPM step (learned_range, hybrid, loss_second_moment; T = 25
#                                        so that the importance sampler's history fills within the run)
# The CIFAR-10 config (35.7M parameters), batch 128, on 512 random 32x32 stand-in images, GPU_CHECK_CIFAR_STEPS
# steps, dropout 0 and 10 warm-up steps so that the curves move and compare:
#   cifar_eager        as shipped (bf16, channels-last, fused Adam), eager, under --sync-check; it learns (the
#                      loss below 0.8 of its first logged mean: 30 steps from noise images)
#   cifar_graph        captured, under --sync-check: curve within 5% of cifar_eager's
#   cifar_fp32         fp32, NCHW: curve within 15% of cifar_eager's
# Sampling from smoke_plain's weights (respaced ancestral, 50 of T = 100 steps; DDIM over 25), each run's images/s:
#   sample_ancestral  sample_ddim               batch 5 against 16: the same images up to a level in 1% of pixels
#   sample_ancestral_graph  sample_ddim_graph   the step replayed from a CUDA graph against the eager step
# Environment: GPU_CHECK_DATA (a folder with t10k-images-idx3-ubyte.gz and t10k-labels-idx1-ubyte.gz), GPU_CHECK_WORK
# (default /tmp/ddpm-gpu-check), DDPM (default build/ddpm), COMPARE (compare_checkpoints; default
# build/tests/compare_checkpoints), PYTHON (default python3), GPU_CHECK_STEPS (300), GPU_CHECK_BATCH (32),
# GPU_CHECK_CIFAR_STEPS (30), GPU_CHECK_BITWISE_STEPS (100), GPU_CHECK_DEVICE (cuda; cpu rehearses a check here:
# the MPI all-reduce for NCCL's).
set -euo pipefail
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
CHECK="${1:?usage: gpu_check.sh CHECK (the checks are listed in the header of this script)}"
DATA="${GPU_CHECK_DATA:?GPU_CHECK_DATA: the folder of Fashion-MNIST t10k-*-ubyte.gz}"
WORK="${GPU_CHECK_WORK:-/tmp/ddpm-gpu-check}"
DDPM="${DDPM:-$REPO_ROOT/build/ddpm}"
COMPARE="${COMPARE:-$REPO_ROOT/build/tests/compare_checkpoints}"
PYTHON="${PYTHON:-python3}"
STEPS="${GPU_CHECK_STEPS:-300}"
BATCH="${GPU_CHECK_BATCH:-32}"
CIFAR_STEPS="${GPU_CHECK_CIFAR_STEPS:-30}"
BITWISE_STEPS="${GPU_CHECK_BITWISE_STEPS:-100}"
DEVICE="${GPU_CHECK_DEVICE:-cuda}"
COMPARE_RUNS=("$PYTHON" "$REPO_ROOT/launch/gpu/compare_runs.py")
mkdir -p "$WORK"
[[ "$DEVICE" == cuda ]] && NCCL=(--set distributed.backend=nccl) || NCCL=(--set distributed.backend=mpi)
NCCL+=(--set distributed.always_reduce=true)
SHIPPED=(--set train.precision=bf16 --set train.channels_last=true --set train.fused_adam=true)
IMPROVED=(--set diffusion.model_variance=learned_range --set diffusion.loss=hybrid
          --set train.timestep_sampler=loss_second_moment --set diffusion.timesteps=25)
SYNC=(--sync-check "${SHIPPED[@]}" --set train.steps=50 --set train.checkpoint_every=50)

checkpoint() { printf '%s/%s/ckpt-%09d.ddpm' "$WORK" "$1" "$2"; }  # trainer/checkpoint's file name

# train NAME CONFIG STEPS [ARGS...]: ddpm train into $WORK/NAME; a finished run is reused (its .done mark).
train() {
  local name="$1" config="$2" steps="$3"
  shift 3
  if [[ -f "$WORK/$name/.done" ]]; then echo "== $name: reused"; return 0; fi
  rm -rf "${WORK:?}/$name"
  echo "== $name: ddpm train $*"
  # Explicit, not set -e: that is off inside a function called from an if or an && list.
  if ! "$DDPM" train --config "$config" --set "run.device=$DEVICE" --set "run.dir=$WORK/$name" \
    --set "train.steps=$steps" --set "train.checkpoint_every=$steps" --set monitoring.enabled=false \
    --set monitoring.eval_every=0 --progress plain "$@" >"$WORK/$name.out" 2>&1; then
    echo "FAIL: ddpm train of $name:"
    grep -m1 -A30 "ddpm: error" "$WORK/$name.out" || tail -n 20 "$WORK/$name.out"
    return 1
  fi
  tail -n 3 "$WORK/$name.out"
  touch "$WORK/$name/.done"
}
smoke() {  # smoke NAME [ARGS...]: the smoke model on Fashion-MNIST's test split
  local name="$1"
  shift
  train "$name" "$REPO_ROOT/configs/smoke.yaml" "$STEPS" --set "data.path=$DATA" --set data.split=test \
    --set "train.batch_size=$BATCH" --set train.log_every=25 "$@"
}
cifar() {  # cifar NAME [ARGS...]: the CIFAR-10 config on stand-in images
  local name="$1" images="$WORK/stand_in_images"
  shift
  "$PYTHON" "$REPO_ROOT/launch/bench/stand_in_images.py" "$images"
  train "$name" "$REPO_ROOT/configs/cifar10.yaml" "$CIFAR_STEPS" --set data.format=folder --set "data.path=$images" \
    --set train.batch_size=128 --set model.dropout=0 --set train.warmup_steps=10 --set train.log_every=5 "$@"
}
bitwise() {  # bitwise A B STEPS: true when the two runs' weights are bit-identical, false when not, else an error
  local code=0
  "$COMPARE" "$(checkpoint "$1" "$3")" "$(checkpoint "$2" "$3")" >"$WORK/compare_$1_$2.out" 2>&1 || code=$?
  tail -n 1 "$WORK/compare_$1_$2.out" >&2
  case "$code" in
    0) echo true ;;
    1) echo false ;;
    *) echo "\"compare_checkpoints exited $code\"" ;;  # a file it could not read is no difference in results
  esac
}
sync_done() {  # sync_done NAME: the run under --sync-check finished (train would have failed otherwise)
  echo "sync check, $1: no host wait inside a step (50 steps)"
  echo '{"ok": true, "steps": 50}'
}
sample() {  # sample NAME SAMPLER STEPS BATCH GRAPH: 16 images from smoke_plain's weights, their images/s printed
  local name="$1" sampler="$2" steps="$3" batch="$4" graph="$5"
  smoke smoke_plain >&2 || return 1
  echo "== $name: ddpm sample --sampler $sampler --steps $steps --batch-size $batch (cuda_graph $graph)"
  "$DDPM" sample --config "$REPO_ROOT/configs/smoke.yaml" --set "run.device=$DEVICE" --set "run.dir=$WORK/smoke_plain" \
    --set "data.path=$DATA" --num-images 16 --output "$WORK/$name.npz" --progress plain --sampler "$sampler" \
    --steps "$steps" --batch-size "$batch" --set "train.cuda_graph=$graph" >"$WORK/$name.out" 2>&1 ||
    { tail -n 12 "$WORK/$name.out"; return 1; }
  tail -n 2 "$WORK/$name.out"
  grep -o '[0-9.]* images/s' "$WORK/$name.out" | tail -n 1 | cut -d' ' -f1 >"$WORK/$name.rate"
}
sampling_pair() {  # sampling_pair KIND STEPS BATCH GRAPH: a sample run against the eager batch-16 run
  local kind="$1" steps="$2" batch="$3" graph="$4" name="$1_b$3_$4"
  [[ -f "$WORK/${kind}_b16_false.npz" ]] || sample "${kind}_b16_false" "$kind" "$steps" 16 false
  sample "$name" "$kind" "$steps" "$batch" "$graph"
  "${COMPARE_RUNS[@]}" images "$WORK/${kind}_b16_false.npz" "$WORK/$name.npz" \
    "images_per_second=$(cat "$WORK/$name.rate")" "reference_images_per_second=$(cat "$WORK/${kind}_b16_false.rate")"
}

# A check makes its own runs afresh (a rerun of a check that failed must not compare the same runs again); the
# runs of other checks it compares with are reused when they finished.
rm -rf "${WORK:?}/$CHECK"
[[ "$CHECK" != nccl_bitwise ]] || rm -rf "$WORK"/det_*
case "$CHECK" in
  smoke_plain) smoke smoke_plain || exit 1; "${COMPARE_RUNS[@]}" learns "$WORK/smoke_plain" ;;
  smoke_floor)
    smoke smoke_plain || exit 1; smoke smoke_floor
    "${COMPARE_RUNS[@]}" curve "$WORK/smoke_floor" "$WORK/smoke_plain" 0.05 ;;
  smoke_shipped | smoke_graph | smoke_nccl)
    declare -A ARGS=([smoke_shipped]="${SHIPPED[*]}" [smoke_graph]="--set train.cuda_graph=true" [smoke_nccl]="${NCCL[*]}")
    declare -A TOLERANCE=([smoke_shipped]=0.15 [smoke_graph]=0.05 [smoke_nccl]=0.05)
    smoke smoke_plain || exit 1; smoke smoke_floor
    # shellcheck disable=SC2086
    smoke "$CHECK" ${ARGS[$CHECK]}
    "${COMPARE_RUNS[@]}" curve "$WORK/$CHECK" "$WORK/smoke_plain" "${TOLERANCE[$CHECK]}" "$WORK/smoke_floor" ;;
  nccl_bitwise)
    DETERMINISTIC=(--set train.deterministic=true)
    STEPS="$BITWISE_STEPS"
    smoke det_plain "${DETERMINISTIC[@]}" || exit 1; smoke det_again "${DETERMINISTIC[@]}" || exit 1; smoke det_nccl "${DETERMINISTIC[@]}" "${NCCL[@]}"
    repeat="$(bitwise det_again det_plain "$STEPS")" nccl="$(bitwise det_nccl det_plain "$STEPS")" graph=null
    if [[ "$DEVICE" == cuda ]]; then
      if smoke det_graph "${DETERMINISTIC[@]}" --set train.cuda_graph=true; then graph="$(bitwise det_graph det_plain "$STEPS")"; else graph='"the run failed"'; fi
    fi
    echo "train.deterministic: two plain runs bit-identical: $repeat; NCCL at world size 1 against none: $nccl; CUDA graph against eager: $graph"
    ok=false
    [[ "$repeat" == true && "$nccl" == true ]] && ok=true
    echo "{\"ok\": $ok, \"deterministic_repeat_bitwise\": $repeat, \"nccl_bitwise\": $nccl, \"graph_bitwise\": $graph}"
    [[ "$ok" == true ]] ;;
  sync_eager) smoke sync_eager "${SYNC[@]}" || exit 1; sync_done sync_eager ;;
  sync_nccl)
    smoke sync_eager "${SYNC[@]}" || exit 1; smoke sync_nccl "${SYNC[@]}" "${NCCL[@]}"
    "${COMPARE_RUNS[@]}" curve "$WORK/sync_nccl" "$WORK/sync_eager" 0.15 ;;
  sync_graph) smoke sync_graph "${SYNC[@]}" --set train.cuda_graph=true || exit 1; sync_done sync_graph ;;
  sync_improved) smoke sync_improved "${SYNC[@]}" "${IMPROVED[@]}" || exit 1; sync_done sync_improved ;;
  sync_improved_graph) smoke sync_improved_graph "${SYNC[@]}" "${IMPROVED[@]}" --set train.cuda_graph=true || exit 1; sync_done sync_improved_graph ;;
  cifar_eager) cifar cifar_eager --sync-check || exit 1; "${COMPARE_RUNS[@]}" learns "$WORK/cifar_eager" 0.8 ;;
  cifar_graph)
    cifar cifar_eager --sync-check || exit 1; cifar cifar_graph --sync-check --set train.cuda_graph=true
    "${COMPARE_RUNS[@]}" curve "$WORK/cifar_graph" "$WORK/cifar_eager" 0.05 ;;
  cifar_fp32)
    cifar cifar_eager --sync-check || exit 1; cifar cifar_fp32 --set train.precision=fp32 --set train.channels_last=false
    "${COMPARE_RUNS[@]}" curve "$WORK/cifar_fp32" "$WORK/cifar_eager" 0.15 ;;
  sample_ancestral) sampling_pair ancestral 50 5 false ;;
  sample_ddim) sampling_pair ddim ddim25 5 false ;;
  sample_ancestral_graph) sampling_pair ancestral 50 16 true ;;
  sample_ddim_graph) sampling_pair ddim ddim25 16 true ;;
  *) echo "gpu_check: no check '$CHECK' (the checks are listed in the header of this script)" >&2; exit 2 ;;
esac
