#!/usr/bin/env bash
# Data parallelism with real mpirun processes on the CPU (MPI backend), smoke config with dropout off:
#  - 2 and 3 ranks with per-rank batch B end with the parameters of 1 rank with batch N·B (same images,
#    same per-image t and noise), up to summation order;
#  - the bucket layout does not change the result (one bucket per parameter, one bucket for all);
#  - a 2-rank run stopped and resumed ends bit-identical to the uninterrupted 2-rank run;
#  - 1 rank with distributed.always_reduce (the all-reduce path run with nothing to reduce) ends bit-identical
#    to 1 rank without communication.
#  - train.timestep_sampler loss_second_moment: the sampler's history is the same on every rank (the replica check
#    of every step compares it), 2 ranks end where 1 rank with twice the batch does (history and weights, up to
#    summation order), and a 2-rank resume is bit-identical, history included.
# Usage: ddp_test.sh DDPM COMPARE_CHECKPOINTS SOURCE_DIR
set -uo pipefail
# shellcheck source=../lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
require_args 3 "ddp_test.sh DDPM COMPARE_CHECKPOINTS SOURCE_DIR" "$@"
DDPM="$1"
COMPARE="$2"
SRC="$3"
require_executables "$DDPM" "$COMPARE"
require_files "$SRC/configs/smoke.yaml"
require_commands mpirun python3
MPIRUN=(mpirun --oversubscribe)
STEPS=4

train() {  # train RANKS RUN_NAME PER_RANK_BATCH [extra --set ...]
  local ranks="$1" name="$2" batch="$3"
  shift 3
  local log="$WORK/$name.log"
  if ! "${MPIRUN[@]}" -np "$ranks" "$DDPM" train --config "$SRC/configs/smoke.yaml" --progress plain \
      --set "run.dir=$WORK/$name" --set "train.batch_size=$batch" --set "train.steps=$STEPS" \
      --set train.checkpoint_every=2 --set train.keep_checkpoints=5 --set distributed.replica_check_every=1 \
      --set diffusion.timesteps=50 --set train.log_every=1 "$@" >"$log" 2>&1; then
    fail "training $name on $ranks ranks:"
    tail -n 5 "$log" | sed 's/^/    /'
    return 1
  fi
}

ckpt() { ckpt_path "$WORK/$1" "$2"; }  # ckpt RUN_NAME STEP

train 1 one 12
train 1 one_reduced 12 --set distributed.always_reduce=true
train 2 two 6
train 3 three 4
# Same gradients up to float summation order, through 4 Adam steps.
expect_same "2 ranks x 6 = 1 rank x 12" "$(ckpt two $STEPS)" "$(ckpt one $STEPS)" --atol 1e-5 --rtol 1e-4
expect_same "3 ranks x 4 = 1 rank x 12" "$(ckpt three $STEPS)" "$(ckpt one $STEPS)" --atol 1e-5 --rtol 1e-4
expect_same "EMA too: 2 ranks x 6 = 1 rank x 12" "$(ckpt two $STEPS)" "$(ckpt one $STEPS)" --prefix ema_ --atol 1e-5 --rtol 1e-4
# Adam and clipping hide the scale of the gradient, so check it directly: the logged global gradient norm of
# the averaged gradient equals the single-rank one (a sum instead of a mean would double it).
norms_match() {  # norms_match RUN_A RUN_B
  python3 - "$WORK/$1/train_log.jsonl" "$WORK/$2/train_log.jsonl" <<'PY'
import json, sys
a, b = ([json.loads(l) for l in open(p)] for p in sys.argv[1:3])
assert len(a) == len(b) > 0, (len(a), len(b))
for x, y in zip(a, b):
    assert abs(x["grad_norm"] - y["grad_norm"]) <= 1e-4 * y["grad_norm"], (x["step"], x["grad_norm"], y["grad_norm"])
    assert abs(x["loss"] - y["loss"]) <= 1e-4 * y["loss"], (x["step"], x["loss"], y["loss"])
print("grad norms and losses match at steps", [x["step"] for x in a])
PY
}
for run in two three; do
  if out="$(norms_match "$run" one 2>&1)"; then ok "$run vs one: $out"; else fail "$run vs one: $out"; fi
done

# One rank through the whole all-reduce path (buckets, the MPI communicator, the division by the world size)
# ends exactly where no communication does; the log shows that the path did run.
expect_same "1 rank, gradients all-reduced = no communication (bitwise)" "$(ckpt one_reduced $STEPS)" "$(ckpt one $STEPS)"
expect_same "1 rank, gradients all-reduced = no communication (bitwise, EMA)" "$(ckpt one_reduced $STEPS)" "$(ckpt one $STEPS)" --prefix ema_
expect_same "1 rank, gradients all-reduced = no communication (bitwise, Adam)" "$(ckpt one_reduced $STEPS)" "$(ckpt one $STEPS)" --prefix adam/
if out="$(python3 - "$WORK/one_reduced/train_log.jsonl" "$WORK/one/train_log.jsonl" <<'PY'
import json, sys
reduced, plain = ([json.loads(l)["comm_total_seconds"] for l in open(p)] for p in sys.argv[1:3])
assert all(s > 0 for s in reduced), f"always_reduce: no communication time logged: {reduced}"
assert all(s == 0 for s in plain), f"one rank without always_reduce communicated: {plain}"
print(f"communication {sum(reduced) / len(reduced) * 1e3:.2f} ms/step with always_reduce, none without")
PY
)"; then
  ok "$out"
else
  fail "$out"
fi

# The comparison can fail: training moved the weights well beyond that tolerance.
expect_different "step 2 and step $STEPS weights differ beyond the tolerance (else it would be meaningless)" \
  "$(ckpt one 2)" "$(ckpt one $STEPS)" --atol 1e-5 --rtol 1e-4

train 2 two_tiny_buckets 6 --set distributed.bucket_mb=0.000001 --set distributed.first_bucket_mb=0.000001
train 2 two_one_bucket 6 --set distributed.bucket_mb=4096 --set distributed.first_bucket_mb=4096
expect_same "one bucket per parameter = default buckets (2 ranks, bitwise)" "$(ckpt two_tiny_buckets $STEPS)" "$(ckpt two $STEPS)"
expect_same "one bucket for all = default buckets (2 ranks, bitwise)" "$(ckpt two_one_bucket $STEPS)" "$(ckpt two $STEPS)"

# Resume under 2 ranks: stop at step 2 (a checkpoint), resume to the end.
STEPS=2 train 2 resumed 6
train 2 resumed 6
expect_same "2-rank resume = uninterrupted (bitwise, model)" "$(ckpt resumed $STEPS)" "$(ckpt two $STEPS)"
expect_same "2-rank resume = uninterrupted (bitwise, EMA)" "$(ckpt resumed $STEPS)" "$(ckpt two $STEPS)" --prefix ema_
if grep -q "resumed at step 2" "$WORK/resumed.log"; then ok "resumed at step 2"; else fail "no resume"; fi

# Importance-sampled t (loss_second_moment), T = 25: 24 steps of 24 images fill every t's 10 losses, so the
# sampler is warm and draws by its probabilities for the last steps. Each rank feeds it every rank's losses ordered
# by data set index, so 2 ranks x 12 hold the history of 1 rank x 24 (losses equal up to summation order).
IS_STEPS=24
IS_FLAGS=(--set train.timestep_sampler=loss_second_moment --set diffusion.timesteps=25 --set train.checkpoint_every=12)
STEPS=$IS_STEPS train 1 is_one 24 "${IS_FLAGS[@]}"
STEPS=$IS_STEPS train 2 is_two 12 "${IS_FLAGS[@]}"
STEPS=12 train 2 is_resumed 12 "${IS_FLAGS[@]}"
STEPS=$IS_STEPS train 2 is_resumed 12 "${IS_FLAGS[@]}"
# Over 24 Adam steps the summation-order round-off of the gradients grows to ~3e-4 in the weights with uniform t
# too (the control pair below): the importance-sampled pair must stay within a few times the uniform pair's
# difference (t drawn otherwise for even one image would make it O(1e-2)).
STEPS=$IS_STEPS train 1 is_uniform_one 24 --set diffusion.timesteps=25 --set train.checkpoint_every=12
STEPS=$IS_STEPS train 2 is_uniform_two 12 --set diffusion.timesteps=25 --set train.checkpoint_every=12
compare_ckpt "$(ckpt is_uniform_two $IS_STEPS)" "$(ckpt is_uniform_one $IS_STEPS)" --atol 1e-5 --rtol 1e-4
uniform_out="$COMPARE_OUT"
compare_ckpt "$(ckpt is_two $IS_STEPS)" "$(ckpt is_one $IS_STEPS)" --atol 1e-5 --rtol 1e-4
sampled_out="$COMPARE_OUT"
if out="$(python3 - "$uniform_out" "$sampled_out" <<'PY'
import re, sys
uniform, sampled = (float(re.search(r"max \|a-b\| = ([0-9.e+-]+)", text).group(1)) for text in sys.argv[1:3])
assert 0 < uniform < 1e-3, f"the uniform control pair differs by {uniform}"
assert sampled <= 4 * uniform, f"2 ranks x 12 vs 1 rank x 24: {sampled} with loss_second_moment, {uniform} with uniform t"
print(f"2 ranks x 12 vs 1 rank x 24 after {24} steps: max |a-b| {sampled:.3g} with loss_second_moment, {uniform:.3g} with uniform t")
PY
)"; then ok "loss_second_moment: 2 ranks = 1 rank with twice the batch, up to the round-off uniform t has too: $out"; else fail "$out"; fi
if out="$(norms_match is_two is_one 2>&1)"; then ok "loss_second_moment, is_two vs is_one: $out"; else fail "is_two vs is_one: $out"; fi
expect_same "loss_second_moment: 2 ranks x 12 = 1 rank x 24 (the sampler's loss history and counts)" \
  "$(ckpt is_two $IS_STEPS)" "$(ckpt is_one $IS_STEPS)" --prefix timestep_sampler/ --atol 1e-5 --rtol 1e-4
expect_same "loss_second_moment: 2-rank resume = uninterrupted (bitwise, model)" "$(ckpt is_resumed $IS_STEPS)" \
  "$(ckpt is_two $IS_STEPS)"
expect_same "loss_second_moment: 2-rank resume = uninterrupted (bitwise, sampler state)" "$(ckpt is_resumed $IS_STEPS)" \
  "$(ckpt is_two $IS_STEPS)" --prefix timestep_sampler/
# The history moved between the checkpoints, beyond the tolerance (else the comparisons above would be empty).
expect_different "the sampler's history changed from step 12 to step $IS_STEPS" "$(ckpt is_two 12)" "$(ckpt is_two $IS_STEPS)" \
  --prefix timestep_sampler/history --atol 1e-5 --rtol 1e-4
# Warm before the end: every t's history full, so the last steps drew t by the sampler's probabilities.
if out="$(python3 - "$WORK/is_two/train_log.jsonl" "$WORK/is_one/train_log.jsonl" <<'PY'
import json, sys
for path in sys.argv[1:]:
    lines = [json.loads(l) for l in open(path)]
    filled = [l["timestep_sampler_filled"] for l in lines]
    assert filled[-1] == 25, f"{path}: the history is not full at the end: {filled}"
    warm_at = next(l["step"] for l in lines if l["timestep_sampler_filled"] == 25)
    assert warm_at < 24, f"{path}: warm only at the last step"
print(f"warm at step {warm_at} of 24; filled timesteps by step: {filled}")
PY
)"; then ok "$out"; else fail "$out"; fi

# Micro-batches: 2 micro-batches of 3 accumulate to the gradient of one batch of 6.
train 2 two_micro 6 --set train.micro_batches=2
expect_same "2 micro-batches of 3 = one batch of 6 (2 ranks)" "$(ckpt two_micro $STEPS)" "$(ckpt two $STEPS)" --atol 1e-5 --rtol 1e-4

finish
