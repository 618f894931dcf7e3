#!/usr/bin/env bash
# ddpm against the PyTorch stack a user would pick instead, in one job, one table.
#
#   bash launch/bench/bench.sh gpu   # CIFAR-10 config (35.7M parameters), batch 128, bf16, on the first GPU
#   bash launch/bench/bench.sh cpu   # the smoke model on the CPU: checks the whole pipeline without a GPU
#
# Ours: `ddpm bench` for the config as shipped, and each speed option on its own against a plain baseline
# (fp32, NCHW, per-tensor Adam), so each option's effect is measured, not assumed. The peer:
# launch/bench/peer_bench.py, diffusers' UNet2DModel with the same architecture, trained by a plain PyTorch loop with
# the same optimizer, batch and precision, eager and under torch.compile. Both also time ancestral sampling.
# Prints one table with the ratios ours / peer and writes every report to $OUT (default bench_results.jsonl).
# The shipped config's run (with and without a CUDA graph) and the peer's also profile PROFILE_STEPS steps after
# the timed ones: the table then says where a step's time goes (launch/bench/bench_table.py).
# Environment: DDPM (the ddpm binary, default build/ddpm), PYTHON (a python with torch; default the venv of
# launch/setup.sh), OUT, PEER_WHEELS (where peer_bench.py finds diffusers' wheels when it is not installed),
# PROFILE_STEPS (default 8; 0: no profiles), TRACE (a file: the shipped config's profiled steps as a Chrome trace),
# BENCH_MIRROR (a file every report line is appended to as well),
# BENCH_WARMUP, BENCH_STEPS (the steps before timing and timed: gpu 20 and 100, cpu 5 and 60),
# BENCH_SAMPLING (1, the default; 0: the training rows time no sampling),
# BENCH_ONLY (one row by its key, its report line printed last, exit 1 when it failed: shipped, nccl1 (gpu) or
# mpi1 (cpu), graph (gpu), baseline, bf16, channels_last, fused_adam, cudnn_benchmark and shipped_cudnn_benchmark
# (gpu), peer_eager, peer_compile; with BENCH_PART=sampling: sampling, sampling_graph (gpu), sampling_peer_eager,
# sampling_peer_compile. launch/gpu/run.sh runs the rows so, one at a time against its clock),
# BENCH_PART (all, the default; sampling: sampling alone, ours as shipped then the peer eager and compiled,
# BENCH_REPEAT times (default 2) in turn, one training step each: on a shared machine each round's three share its
# conditions, and the table gives each round's ratios and their spread; the first round is profiled).
set -euo pipefail
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
# shellcheck source=../env.sh
source "$REPO_ROOT/launch/env.sh"
MODE="${1:-cpu}"
DDPM="${DDPM:-$REPO_ROOT/build/ddpm}"
PYTHON="${PYTHON:-${DDPM_TORCH_ENV:-$HOME/.cache/ddpm/torch-$DDPM_TORCH_VERSION}/bin/python}"
[[ -x "$PYTHON" ]] || PYTHON=python3
OUT="${OUT:-$REPO_ROOT/bench_results.jsonl}"
PROFILE_STEPS="${PROFILE_STEPS:-8}"
PROFILE=(--profile-steps "$PROFILE_STEPS")
TRACE_ARGS=()
if [[ -n "${TRACE:-}" && "$PROFILE_STEPS" != 0 ]]; then TRACE_ARGS=(--trace "$TRACE"); fi
PART="${BENCH_PART:-all}"
[[ "$PART" =~ ^(all|sampling)$ ]] || { echo "bench.sh: BENCH_PART must be all or sampling, not '$PART'" >&2; exit 2; }
REPEAT="${BENCH_REPEAT:-2}"

case "$MODE" in
  gpu)
    CONFIG="$REPO_ROOT/configs/cifar10.yaml"
    BATCH=128 WARMUP="${BENCH_WARMUP:-20}" STEPS="${BENCH_STEPS:-100}" SAMPLE_BATCH=256 SAMPLE_STEPS=1000
    SETS=(--set run.device=cuda --set train.batch_size=$BATCH)
    if [[ ! -d "$REPO_ROOT/data/cifar-10-batches-bin" ]]; then
      # No CIFAR-10 here (nothing is downloaded at run time): 32x32 RGB stand-in images of the same shape;
      # the step's cost does not depend on the pixels.
      STAND_IN="${TMPDIR:-/tmp}/ddpm-bench-images"
      "$PYTHON" "$REPO_ROOT/launch/bench/stand_in_images.py" "$STAND_IN"
      SETS+=(--set data.format=folder --set "data.path=$STAND_IN")
      echo "bench: no data/cifar-10-batches-bin; training on 512 random 32x32 RGB images in $STAND_IN" >&2
    fi
    PEER_MODEL=(--device cuda --image-size 32 --in-channels 3 --base-channels 128 --channel-mult 1,2,2,2
                --num-res-blocks 2 --attention-resolutions 16 --dropout 0.1)
    ;;
  cpu)
    CONFIG="$REPO_ROOT/configs/smoke.yaml"
    BATCH=8 WARMUP="${BENCH_WARMUP:-5}" STEPS="${BENCH_STEPS:-60}" SAMPLE_BATCH=4 SAMPLE_STEPS=50
    SETS=(--set train.batch_size=$BATCH --set diffusion.timesteps=1000)
    PEER_MODEL=(--device cpu --image-size 28 --in-channels 1 --base-channels 32 --channel-mult 1,2
                --num-res-blocks 1 --attention-resolutions 14 --dropout 0.0)
    ;;
  *) echo "usage: bench.sh gpu|cpu" >&2; exit 2 ;;
esac
# The shipped config's speed options, which "ours" runs with and the peer copies.
RESOLVED="$("$DDPM" config --config "$CONFIG")"
PRECISION="$(sed -n 's/^  precision: \([a-z0-9]*\).*/\1/p' <<<"$RESOLVED")"
CHANNELS_LAST="$(sed -n 's/^  channels_last: \([a-z]*\).*/\1/p' <<<"$RESOLVED")"
# The peer builds the config's function: its downsampling padding too (Ho et al.'s 0 in cifar10.yaml, 1 in smoke.yaml).
DOWNSAMPLE_PADDING="$(sed -n 's/^  downsample_padding: \([0-9]*\).*/\1/p' <<<"$RESOLVED")"
: >"$OUT"

row() {  # row JSON: one report line into $OUT (and $BENCH_MIRROR); with BENCH_ONLY on stdout too, and its exit
  echo "$1" >>"$OUT"
  if [[ -n "${BENCH_MIRROR:-}" ]]; then echo "$1" >>"$BENCH_MIRROR"; fi
  if [[ -n "${BENCH_ONLY:-}" ]]; then
    echo "$1"
    [[ "$1" != *'"report": {"error"'* ]] || exit 1
  fi
}

ROUND=""  # the round of BENCH_PART=sampling, recorded in each of its rows
round_field() { [[ -z "$ROUND" ]] || echo "\"round\": $ROUND, "; }
ONLY="${BENCH_ONLY:-}"
chosen() { [[ -z "$ONLY" || "$ONLY" == "$1" ]]; }  # chosen KEY: the row KEY runs in this job

ours() {  # ours KEY NAME [--set ...]: one ddpm bench run, its JSON report appended to $OUT with a name
  local key="$1" name="$2" report
  shift 2
  chosen "$key" || return 0
  echo "== ddpm: $name" >&2
  # A row that fails (its output is above) is a row of the table that says so, not the end of the job.
  report="$("$DDPM" bench --config "$CONFIG" "${SETS[@]}" "$@" --warmup "$WARMUP" --steps "$STEPS" | tail -n 1)" ||
    report="{\"error\": \"ddpm bench exited $?\"}"
  row "{\"name\": \"ddpm $name\", $(round_field)\"report\": $report}"
}

peer() {  # peer KEY NAME MODE: one peer_bench.py run
  local key="$1" name="$2" mode="$3" report flags=()
  chosen "$key" || return 0
  [[ "$CHANNELS_LAST" == true ]] && flags+=(--channels-last)
  [[ -n "${PEER_WHEELS:-}" ]] && flags+=(--wheels "$PEER_WHEELS")
  echo "== peer: $name" >&2
  report="$("$PYTHON" "$REPO_ROOT/launch/bench/peer_bench.py" "${PEER_MODEL[@]}" --downsample-padding "$DOWNSAMPLE_PADDING" \
    --batch "$BATCH" --precision "$PRECISION" \
    "${flags[@]}" --mode "$mode" --steps "${PEER_STEPS:-$STEPS}" --warmup "$WARMUP" --sample-batch "$PEER_SAMPLE_BATCH" \
    --sample-steps "$SAMPLE_STEPS" "${PROFILE[@]}" | tail -n 1)" || report="{\"error\": \"peer_bench.py exited $?\"}"
  row "{\"name\": \"$name\", $(round_field)\"report\": $report}"
}

LAYOUT=""
[[ "$CHANNELS_LAST" != true ]] || LAYOUT=", channels-last"
SHIPPED="as shipped ($PRECISION$LAYOUT, fused Adam)"
SAMPLING=(--sample-batch "$SAMPLE_BATCH" --sample-steps "$SAMPLE_STEPS")
PEER_SAMPLE_BATCH="$SAMPLE_BATCH"
if [[ "${BENCH_SAMPLING:-1}" == 0 ]]; then SAMPLING=(--sample-batch 0) PEER_SAMPLE_BATCH=0; fi

if [[ "$PART" == sampling ]]; then
  # Sampling only: one training step of ours (the bench's least), none of the peer's (it would compile a training
  # graph), then the same sampling runs as a whole job's, round after round.
  WARMUP=0 STEPS=1 PEER_STEPS=0
  for ((ROUND = 1; ROUND <= REPEAT; ROUND++)); do
    [[ $ROUND == 1 ]] || PROFILE=(--profile-steps 0)
    ours sampling "$SHIPPED" "${SAMPLING[@]}" "${PROFILE[@]}"
    [[ "$MODE" != gpu ]] || ours sampling_graph "$SHIPPED + CUDA graph" --set train.cuda_graph=true "${SAMPLING[@]}"
    peer sampling_peer_eager "diffusers eager" eager
    peer sampling_peer_compile "diffusers torch.compile" compile
  done
  [[ -n "$ONLY" ]] || "$PYTHON" "$REPO_ROOT/launch/bench/bench_table.py" "$OUT"
  exit 0
fi

# In the order of their worth, so that a job stopped early (launch/gpu/run.sh runs them one key at a time, against
# the clock) has the shipped config's figures first.
ours shipped "$SHIPPED" "${SAMPLING[@]}" "${PROFILE[@]}" "${TRACE_ARGS[@]}"
# World size 1 with the gradients all-reduced all the same (buckets, hooks, the communicator): what the
# communication path costs when there is nothing to communicate (target on GPUs: >= 99% of the row above).
if [[ "$MODE" == gpu ]]; then
  ours nccl1 "as shipped, NCCL all-reduce at world size 1" --set distributed.backend=nccl --set distributed.always_reduce=true
  # The whole step captured once and replayed (one launch a step instead of ~2000): GPUs only.
  ours graph "as shipped + CUDA graph" --set train.cuda_graph=true "${SAMPLING[@]}" "${PROFILE[@]}"
else
  ours mpi1 "as shipped, MPI all-reduce at world size 1" --set distributed.backend=mpi --set distributed.always_reduce=true
fi
BASE=(--set train.precision=fp32 --set train.channels_last=false --set train.fused_adam=false)
ours baseline "baseline (fp32, NCHW, per-tensor Adam)" "${BASE[@]}"
ours bf16 "+ bf16 autocast" "${BASE[@]}" --set train.precision=bf16
ours channels_last "+ channels-last" "${BASE[@]}" --set train.channels_last=true
ours fused_adam "+ fused Adam" "${BASE[@]}" --set train.fused_adam=true
[[ "$MODE" != gpu ]] || ours cudnn_benchmark "+ cuDNN autotuning" "${BASE[@]}" --set train.cudnn_benchmark=true
[[ "$MODE" != gpu ]] || ours shipped_cudnn_benchmark "as shipped + cuDNN autotuning" --set train.cudnn_benchmark=true
peer peer_eager "diffusers eager" eager
peer peer_compile "diffusers torch.compile" compile

[[ -n "$ONLY" ]] || "$PYTHON" "$REPO_ROOT/launch/bench/bench_table.py" "$OUT"
