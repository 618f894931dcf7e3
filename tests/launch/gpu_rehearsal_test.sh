#!/usr/bin/env bash
# The rows of the GPU run (launch/gpu/run.sh) rehearsed on the CPU, as rows of launch/gpu/rows.sh: the checks of
# launch/gpu/gpu_check.sh that have a CPU form (GPU_CHECK_DEVICE=cpu: the MPI all-reduce at world size 1 in NCCL's
# place, bit-identical to none under train.deterministic; smoke_nccl's curve is left out: nccl_bitwise runs the
# same path and asks more of it), each comparison's negative control, benchmark rows of
# launch/bench/bench.sh by key (ours and the peer's, training and sampling), and the run's table. What needs a GPU
# (CUDA graphs, NCCL, bf16 speed, the CIFAR-10 rows) is the GPU machine's; the command's set-up up to its first GPU
# call is launch/gpu/dry_run.sh's.
# Usage: gpu_rehearsal_test.sh DDPM COMPARE_CHECKPOINTS SOURCE_DIR
set -uo pipefail
# shellcheck source=../lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
require_args 3 "gpu_rehearsal_test.sh DDPM COMPARE_CHECKPOINTS SOURCE_DIR" "$@"
export DDPM="$1" COMPARE="$2"
SRC="$3"
require_executables "$DDPM" "$COMPARE"
DATA=/usr/share/datasets/fashion-mnist  # the Debian package dataset-fashion-mnist (launch/setup.sh installs it)
require_files "$DATA/t10k-images-idx3-ubyte.gz" "$DATA/t10k-labels-idx1-ubyte.gz"
require_commands python3 timeout
# shellcheck source=../../launch/env.sh
source "$SRC/launch/env.sh"
TORCH_PYTHON="${DDPM_TORCH_ENV:-$HOME/.cache/ddpm/torch-$DDPM_TORCH_VERSION}/bin/python"
require_executables "$TORCH_PYTHON"
# shellcheck source=../../launch/gpu/rows.sh
source "$SRC/launch/gpu/rows.sh"
export GPU_CHECK_DEVICE=cpu GPU_CHECK_STEPS=60 GPU_CHECK_BATCH=8 GPU_CHECK_BITWISE_STEPS=25 GPU_CHECK_DATA="$DATA" GPU_CHECK_WORK="$WORK/checks"
export ROWS_LOGS="$WORK/logs" OMP_NUM_THREADS=1
status_of() { rows_field "$WORK/results.jsonl" "$1"; }          # status_of NAME
report_of() { rows_field "$WORK/results.jsonl" "$1" "$2"; }     # report_of NAME EXPRESSION: of its report, rep

rows_begin "$WORK/results.jsonl" 900 >"$WORK/rows.out"
{
  rows_phase checks 600
  for name in smoke_plain smoke_floor nccl_bitwise sample_ancestral sample_ddim; do
    row "check.$name" 1 240 bash "$SRC/launch/gpu/gpu_check.sh" "$name"
  done
  rows_phase ours 300
  export PEER_WHEELS="$WORK/no-wheels" BENCH_STEPS=3 BENCH_WARMUP=1 PROFILE_STEPS=0 PYTHON="$TORCH_PYTHON"
  row bench.shipped 1 120 env BENCH_ONLY=shipped BENCH_SAMPLING=0 OUT="$WORK/b1.jsonl" bash "$SRC/launch/bench/bench.sh" cpu
  row bench.peer_eager 1 180 env BENCH_ONLY=peer_eager BENCH_SAMPLING=0 OUT="$WORK/b2.jsonl" bash "$SRC/launch/bench/bench.sh" cpu
  row bench.no_such_key 1 60 env BENCH_ONLY=no_such_key OUT="$WORK/b3.jsonl" bash "$SRC/launch/bench/bench.sh" cpu
  rows_phase sampling 300
  row bench.sampling 1 120 env BENCH_ONLY=sampling BENCH_PART=sampling BENCH_REPEAT=1 OUT="$WORK/b4.jsonl" bash "$SRC/launch/bench/bench.sh" cpu
  row bench.sampling_peer_eager 1 180 env BENCH_ONLY=sampling_peer_eager BENCH_PART=sampling BENCH_REPEAT=1 OUT="$WORK/b5.jsonl" \
    bash "$SRC/launch/bench/bench.sh" cpu
  rows_end
} >>"$WORK/rows.out" 2>&1
cat "$WORK/rows.out"

for name in smoke_plain smoke_floor nccl_bitwise sample_ancestral sample_ddim; do
  check "check $name passes on the CPU" test "$(status_of "check.$name")" = ok
done
check "the plain run learns" test "$(report_of check.smoke_plain 'int(rep["last_loss"] < 0.5 * rep["first_loss"])')" = 1
check "two plain CPU runs: the same curve (CPU kernels are deterministic)" test "$(report_of check.smoke_floor 'rep["distance"]')" = 0.0
check "train.deterministic: two plain runs bit-identical" test "$(report_of check.nccl_bitwise 'rep["deterministic_repeat_bitwise"]')" = True
check "the all-reduce at world size 1 bit-identical to none" test "$(report_of check.nccl_bitwise 'rep["nccl_bitwise"]')" = True
check "sampling: images/s in the report" test "$(report_of check.sample_ancestral 'int(rep["images_per_second"] > 0)')" = 1
check "ours, by key: the shipped row" test "$(report_of bench.shipped 'rep["name"]')" = "ddpm as shipped (fp32, fused Adam)"
check "ours: images/s and MFU" test "$(report_of bench.shipped 'int(rep["report"]["images_per_second"] > 0 and rep["report"]["mfu"] > 0)')" = 1
check "the peer, by key" test "$(report_of bench.peer_eager 'int(rep["report"]["images_per_second"] > 0)')" = 1
check "an unknown key is a failed row" test "$(status_of bench.no_such_key)" = failed
check "our sampling row" test "$(report_of bench.sampling 'int(rep["report"]["sampling_images_per_second"] > 0)')" = 1
check "the peer's sampling row, its warm-up apart" \
  test "$(report_of bench.sampling_peer_eager 'int(rep["report"]["sampling_warmup_seconds"] > 0)')" = 1

# Negative controls: each comparison fails where it should.
work="$WORK/checks"
python3 - "$work/smoke_plain/train_log.jsonl" "$WORK/doctored/train_log.jsonl" <<'PY'
import json, os, sys
os.makedirs(os.path.dirname(sys.argv[2]), exist_ok=True)
with open(sys.argv[2], "w") as out:
    for line in open(sys.argv[1]):
        row = json.loads(line)
        row["loss"] *= 1.2  # a curve 20% off
        out.write(json.dumps(row) + "\n")
PY
expect_exit 1 '"ok": false' python3 "$SRC/launch/gpu/compare_runs.py" curve "$WORK/doctored" "$work/smoke_plain" 0.15
expect_exit 0 '"ok": true' python3 "$SRC/launch/gpu/compare_runs.py" curve "$WORK/doctored" "$work/smoke_plain" 0.25
expect_exit 1 'FAIL' python3 "$SRC/launch/gpu/compare_runs.py" images "$work/ancestral_b16_false.npz" "$work/ddim_b16_false.npz"
mkdir -p "$WORK/flat"
python3 -c 'import json
for s in (25, 50): print(json.dumps({"step": s, "loss": 0.5}))' >"$WORK/flat/train_log.jsonl"
expect_exit 1 'not below 0.5 of the first' python3 "$SRC/launch/gpu/compare_runs.py" learns "$WORK/flat"
expect_exit 0 '"ok": true' python3 "$SRC/launch/gpu/compare_runs.py" learns "$WORK/flat" 1.0
expect_exit 2 "no check 'no_such_check'" bash "$SRC/launch/gpu/gpu_check.sh" no_such_check

python3 "$SRC/launch/gpu/results_table.py" "$WORK/results.jsonl" >"$WORK/table.txt" 2>&1
check "results_table.py reads the run" test $? -eq 0
cat "$WORK/table.txt"
check "the table has the ratio ours / peer" grep -q "ours / diffusers eager: training [0-9.]*x" "$WORK/table.txt"
check "the table has the sampling ratio" grep -q "sampling, ours / diffusers eager: [0-9.]*x" "$WORK/table.txt"
check "the table has the README block" grep -q "^| ours / diffusers eager | [0-9.]*x training |" "$WORK/table.txt"
finish
