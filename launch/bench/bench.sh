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
# BENCH_PART (all, the default; ours: ddpm's rows only; peer: the peer's only, added to the reports already in
# $OUT: a run split over two commands, as launch/gpu/gpu_session.sh does; the table shows the rows there are;
# sampling: sampling alone, ours as shipped then the peer eager and compiled, BENCH_REPEAT times (default 2) in
# turn, one training step each: on a shared machine each round's three share its conditions, and the table gives
# each round's ratios and their spread; the first round is profiled).
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
[[ "$PART" =~ ^(all|ours|peer|sampling)$ ]] ||
  { echo "bench.sh: BENCH_PART must be all, ours, peer or sampling, not '$PART'" >&2; exit 2; }
REPEAT="${BENCH_REPEAT:-2}"

case "$MODE" in
  gpu)
    CONFIG="$REPO_ROOT/configs/cifar10.yaml"
    BATCH=128 WARMUP=20 STEPS=100 SAMPLE_BATCH=256 SAMPLE_STEPS=1000
    SETS=(--set run.device=cuda --set train.batch_size=$BATCH)
    if [[ ! -d "$REPO_ROOT/data/cifar-10-batches-bin" ]]; then
      # No CIFAR-10 here (nothing is downloaded at run time): 32x32 RGB stand-in images of the same shape;
      # the step's cost does not depend on the pixels.
      STAND_IN="${TMPDIR:-/tmp}/ddpm-bench-images"
      "$PYTHON" - "$STAND_IN" <<'PY'
import os, random, struct, sys, zlib
out = sys.argv[1]
os.makedirs(out, exist_ok=True)
rng = random.Random(0)
def chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
for i in range(512):
    rows = b"".join(b"\0" + bytes(rng.randrange(256) for _ in range(32 * 3)) for _ in range(32))
    png = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 32, 32, 8, 2, 0, 0, 0))
           + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))
    with open(os.path.join(out, f"{i:04d}.png"), "wb") as f:
        f.write(png)
PY
      SETS+=(--set data.format=folder --set "data.path=$STAND_IN")
      echo "bench: no data/cifar-10-batches-bin; training on 512 random 32x32 RGB images in $STAND_IN" >&2
    fi
    PEER_MODEL=(--device cuda --image-size 32 --in-channels 3 --base-channels 128 --channel-mult 1,2,2,2
                --num-res-blocks 2 --attention-resolutions 16 --dropout 0.1)
    ;;
  cpu)
    CONFIG="$REPO_ROOT/configs/smoke.yaml"
    BATCH=8 WARMUP=5 STEPS=60 SAMPLE_BATCH=4 SAMPLE_STEPS=50
    SETS=(--set train.batch_size=$BATCH --set diffusion.timesteps=1000)
    PEER_MODEL=(--device cpu --image-size 28 --in-channels 1 --base-channels 32 --channel-mult 1,2
                --num-res-blocks 1 --attention-resolutions 14 --dropout 0.0)
    ;;
  *) echo "usage: bench.sh gpu|cpu" >&2; exit 2 ;;
esac
# The shipped config's speed options, which "ours" runs with and the peer copies.
PRECISION="$("$DDPM" config --config "$CONFIG" | sed -n 's/^  precision: \([a-z0-9]*\).*/\1/p')"
CHANNELS_LAST="$("$DDPM" config --config "$CONFIG" | sed -n 's/^  channels_last: \([a-z]*\).*/\1/p')"
# The peer builds the config's function: its downsampling padding too (Ho et al.'s 0 in cifar10.yaml, 1 in smoke.yaml).
DOWNSAMPLE_PADDING="$("$DDPM" config --config "$CONFIG" | sed -n 's/^  downsample_padding: \([0-9]*\).*/\1/p')"
[[ "$PART" == peer ]] || : >"$OUT"

row() {  # row JSON: one report line into $OUT (and $BENCH_MIRROR)
  echo "$1" >>"$OUT"
  if [[ -n "${BENCH_MIRROR:-}" ]]; then echo "$1" >>"$BENCH_MIRROR"; fi
}

ROUND=""  # the round of BENCH_PART=sampling, recorded in each of its rows
round_field() { [[ -z "$ROUND" ]] || echo "\"round\": $ROUND, "; }

ours() {  # ours NAME [--set ...]: one ddpm bench run, its JSON report appended to $OUT with a name
  local name="$1" report
  shift
  echo "== ddpm: $name" >&2
  # A row that fails (its output is above) is a row of the table that says so, not the end of the job.
  report="$("$DDPM" bench --config "$CONFIG" "${SETS[@]}" "$@" --warmup "$WARMUP" --steps "$STEPS" | tail -n 1)" ||
    report="{\"error\": \"ddpm bench exited $?\"}"
  row "{\"name\": \"ddpm $name\", $(round_field)\"report\": $report}"
}

peer() {  # peer NAME MODE: one peer_bench.py run
  local name="$1" mode="$2" report flags=()
  [[ "$CHANNELS_LAST" == true ]] && flags+=(--channels-last)
  [[ -n "${PEER_WHEELS:-}" ]] && flags+=(--wheels "$PEER_WHEELS")
  echo "== peer: $name" >&2
  report="$("$PYTHON" "$REPO_ROOT/launch/bench/peer_bench.py" "${PEER_MODEL[@]}" --downsample-padding "$DOWNSAMPLE_PADDING" \
    --batch "$BATCH" --precision "$PRECISION" \
    "${flags[@]}" --mode "$mode" --steps "${PEER_STEPS:-$STEPS}" --warmup "$WARMUP" --sample-batch "$SAMPLE_BATCH" \
    --sample-steps "$SAMPLE_STEPS" "${PROFILE[@]}" | tail -n 1)" || report="{\"error\": \"peer_bench.py exited $?\"}"
  row "{\"name\": \"$name\", $(round_field)\"report\": $report}"
}

if [[ "$PART" == sampling ]]; then
  # Sampling only: one training step of ours (the bench's least), none of the peer's (it would compile a training
  # graph), then the same sampling runs as a whole job's, round after round.
  WARMUP=0 STEPS=1 PEER_STEPS=0
  for ((ROUND = 1; ROUND <= REPEAT; ROUND++)); do
    [[ $ROUND == 1 ]] || PROFILE=(--profile-steps 0)
    ours "as shipped ($PRECISION$([[ $CHANNELS_LAST == true ]] && echo ', channels-last'), fused Adam)" \
      --sample-batch "$SAMPLE_BATCH" --sample-steps "$SAMPLE_STEPS" "${PROFILE[@]}"
    peer "diffusers eager" eager
    peer "diffusers torch.compile" compile
  done
  "$PYTHON" "$REPO_ROOT/launch/bench/bench_table.py" "$OUT"
  exit 0
fi

if [[ "$PART" != peer ]]; then
  BASE=(--set train.precision=fp32 --set train.channels_last=false --set train.fused_adam=false)
  ours "baseline (fp32, NCHW, per-tensor Adam)" "${BASE[@]}"
  ours "+ bf16 autocast" "${BASE[@]}" --set train.precision=bf16
  ours "+ channels-last" "${BASE[@]}" --set train.channels_last=true
  ours "+ fused Adam" "${BASE[@]}" --set train.fused_adam=true
  ours "as shipped ($PRECISION$([[ $CHANNELS_LAST == true ]] && echo ', channels-last'), fused Adam)" \
    --sample-batch "$SAMPLE_BATCH" --sample-steps "$SAMPLE_STEPS" "${PROFILE[@]}" "${TRACE_ARGS[@]}"
  # World size 1 with the gradients all-reduced all the same (buckets, hooks, the communicator): what the
  # communication path costs when there is nothing to communicate (target on GPUs: >= 99% of the row above).
  if [[ "$MODE" == gpu ]]; then
    ours "as shipped, NCCL all-reduce at world size 1" --set distributed.backend=nccl --set distributed.always_reduce=true
    # The whole step captured once and replayed (one launch a step instead of ~2000): GPUs only.
    ours "as shipped + CUDA graph" --set train.cuda_graph=true --sample-batch "$SAMPLE_BATCH" --sample-steps "$SAMPLE_STEPS" \
      "${PROFILE[@]}"
  else
    ours "as shipped, MPI all-reduce at world size 1" --set distributed.backend=mpi --set distributed.always_reduce=true
  fi
fi
if [[ "$PART" != ours ]]; then
  peer "diffusers eager" eager
  peer "diffusers torch.compile" compile
fi

"$PYTHON" "$REPO_ROOT/launch/bench/bench_table.py" "$OUT"
