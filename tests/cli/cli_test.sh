#!/usr/bin/env bash
# The ddpm command line as a user runs it: train → sample → eval on the smoke config, and the bad inputs a
# user meets (missing or corrupt checkpoints, another run's directory, unwritable outputs, unknown flags),
# each with its exit code and message. Usage: cli_test.sh DDPM_BINARY SOURCE_DIR
set -uo pipefail
# shellcheck source=../lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"  # check NAME COMMAND..., expect_exit CODE PATTERN COMMAND...
require_args 2 "cli_test.sh DDPM_BINARY SOURCE_DIR" "$@"
DDPM="$1"
SRC="$2"
CONFIG="$SRC/configs/smoke.yaml"
require_executables "$DDPM"
require_files "$CONFIG"
require_commands python3 cmp dd
COMMON=(--config "$CONFIG" --set "run.dir=$WORK/run" --set diffusion.timesteps=30)

png_size() { python3 -c 'import struct,sys; d=open(sys.argv[1],"rb").read(24); assert d[:8]==b"\x89PNG\r\n\x1a\n"; print("%dx%d" % struct.unpack(">II", d[16:24]))' "$1"; }

# Nothing trained yet: sampling needs a checkpoint, evaluation falls back to a fresh model and says so.
expect_exit 1 "no valid checkpoint in run directory" "$DDPM" sample "${COMMON[@]}" --output "$WORK/none.png"
expect_exit 0 "freshly initialized" "$DDPM" eval "${COMMON[@]}" --num-images 2 --output "$WORK/fresh.json"

expect_exit 0 "step 4/4 .*img/s  ETA" "$DDPM" train "${COMMON[@]}" --set train.steps=4 --set train.log_every=2 --progress plain
check "checkpoint written" test -f "$WORK/run/ckpt-000000004.ddpm"
check "config saved in the run directory" grep -q "timesteps: 30" "$WORK/run/config.yaml"
check "JSON-lines log" test "$(wc -l <"$WORK/run/train_log.jsonl")" -eq 2

expect_exit 0 "wrote $WORK/a.png" "$DDPM" sample "${COMMON[@]}" --num-images 5 --seed 1 --output "$WORK/a.png" --individual-dir "$WORK/each"
expect_exit 0 "wrote" "$DDPM" sample "${COMMON[@]}" --num-images 5 --seed 1 --output "$WORK/b.png"
expect_exit 0 "wrote" "$DDPM" sample "${COMMON[@]}" --num-images 5 --seed 2 --output "$WORK/c.png"
check "grid of 5 28x28 images in 3 columns" test "$(png_size "$WORK/a.png")" = "92x62"
check "individual images" test "$(ls "$WORK/each" | wc -l)" -eq 5
check "same seed, same grid" cmp -s "$WORK/a.png" "$WORK/b.png"
check "another seed, another grid" bash -c "! cmp -s '$WORK/a.png' '$WORK/c.png'"
# train.deterministic turns on PyTorch's deterministic algorithms process-wide: on a CPU, where the kernels are
# deterministic already, the same run, the same weights and images (and no op of a step refuses to run).
DETERMINISTIC=(--config "$CONFIG" --set "run.dir=$WORK/deterministic" --set diffusion.timesteps=30 --set train.deterministic=true)
expect_exit 0 "step 4/4" "$DDPM" train "${DETERMINISTIC[@]}" --set train.steps=4 --set train.log_every=2 --progress plain
expect_exit 0 "wrote" "$DDPM" sample "${DETERMINISTIC[@]}" --num-images 5 --seed 1 --output "$WORK/deterministic.png"
check "train.deterministic on a CPU: the same grid as without it" cmp -s "$WORK/a.png" "$WORK/deterministic.png"

expect_exit 0 "bits/dim [0-9.]+ = L_T" "$DDPM" eval "${COMMON[@]}" --num-images 3 --output "$WORK/report.json"
check "report has every term" python3 -c '
import json, sys
r = json.load(open(sys.argv[1]))
assert r["images"] == 3 and len(r["per_t_bpd"]) == 30 and len(r["per_t_eps_mse"]) == 30
total = r["prior_bpd"] + sum(r["per_t_bpd"])
assert abs(total - r["total_bpd"]) < 1e-4, (total, r["total_bpd"])
assert abs(r["decoder_bpd"] - r["per_t_bpd"][0]) < 1e-12
assert 0 < r["prior_bpd"] < 1e-2
' "$WORK/report.json"

# The benchmark with a profile: the figures, and a profile that names the work the step does.
expect_exit 0 '"images_per_second"' "$DDPM" bench "${COMMON[@]}" --warmup 1 --steps 2 --profile-steps 2 --sample-batch 2 \
  --sample-steps 25 --output "$WORK/bench.json" --trace "$WORK/trace.json"
check "bench report with training and sampling profiles" python3 -c '
import json, sys
r = json.load(open(sys.argv[1]))
assert r["images_per_second"] > 0 and r["profile_steps"] == 2 and r["sampling_images_per_second"] > 0, r
train, sample = r["profile"], r["sampling_profile"]
assert train["steps"] == 2 and sample["steps"] == 25, (train["steps"], sample["steps"])
names = lambda p: {e["name"] for e in p["top"]}
# Backward convolutions and the fused attention kernel in training; no backward at all in sampling.
assert {"aten::convolution_backward", "aten::_scaled_dot_product_flash_attention_for_cpu_backward"} <= names(train), names(train)
assert "aten::_scaled_dot_product_attention_math" not in names(train) | names(sample)
# Sampling on a CPU runs UNetInference: packed oneDNN convolutions and the fused group norm, no backward.
assert {"mkldnn::_convolution_pointwise", "ddpm::group_norm_nhwc"} <= names(sample), names(sample)
assert not any("backward" in n for n in names(sample)), names(sample)
# T = 30 here: neither fast sampler fits (250 steps, or a stride giving 50), each row says why.
assert [f["sampler"] for f in r["sampling_fast"]] == ["ancestral", "ddim"], r["sampling_fast"]
assert all("skipped" in f for f in r["sampling_fast"]), r["sampling_fast"]
for p in (train, sample):
    assert 0 < p["self_ms_per_step"] and 0 < p["busy_ms_per_step"] and 0.2 < p["busy_share_of_timed_step"] < 3, p
    assert abs(sum(e["self_ms_per_step"] for e in p["top"]) + p["rest_self_ms_per_step"] - p["self_ms_per_step"]) < 1e-6
trace = json.load(open(sys.argv[2]))
assert any(e.get("name") == "aten::convolution_backward" for e in trace["traceEvents"])
' "$WORK/bench.json" "$WORK/trace.json"
expect_exit 1 "\-\-trace needs \-\-profile-steps" "$DDPM" bench "${COMMON[@]}" --steps 1 --trace "$WORK/t.json"
expect_exit 1 "cannot write $WORK/no/dir/t.json: no directory" \
  "$DDPM" bench "${COMMON[@]}" --steps 1 --profile-steps 1 --trace "$WORK/no/dir/t.json"

# Bad input: one clear message, exit 1, nothing lost.
cp "$WORK/run/ckpt-000000004.ddpm" "$WORK/corrupt.ddpm"
printf 'garbage' | dd of="$WORK/corrupt.ddpm" bs=1 seek=100 conv=notrunc 2>/dev/null
expect_exit 1 "checkpoint $WORK/corrupt.ddpm: checksum mismatch" "$DDPM" sample "${COMMON[@]}" --checkpoint "$WORK/corrupt.ddpm" --output "$WORK/x.png"
head -c 50 "$WORK/run/ckpt-000000004.ddpm" >"$WORK/short.ddpm"
expect_exit 1 "short.ddpm: truncated" "$DDPM" eval "${COMMON[@]}" --checkpoint "$WORK/short.ddpm" --output "$WORK/x.json"
expect_exit 1 "cannot write $WORK/no/such/dir/x.png: no directory" "$DDPM" sample "${COMMON[@]}" --output "$WORK/no/such/dir/x.png"
cp "$WORK/run/ckpt-000000004.ddpm" "$WORK/before.ddpm"
expect_exit 1 "holds checkpoints of another run .*model.channels 32 in the checkpoint, 64 in the config" \
  "$DDPM" train "${COMMON[@]}" --set model.channels=64 --progress plain
check "the other run's checkpoint is untouched" cmp -s "$WORK/before.ddpm" "$WORK/run/ckpt-000000004.ddpm"
check "the other run's config is untouched" grep -q "channels: 32" "$WORK/run/config.yaml"
expect_exit 109 "The following argument was not expected: --bogus" "$DDPM" sample "${COMMON[@]}" --output "$WORK/y.png" --bogus
expect_exit 1 "config.yaml:3:3: unknown key 'run.sed' \(did you mean 'seed'\?\)" \
  bash -c "printf 'run:\n  dir: x\n  sed: 1\n' > '$WORK/config.yaml' && '$DDPM' train --config '$WORK/config.yaml'"

# A metrics port that is taken is a clear error at start, not a crash later.
python3 -c 'import socket,time; s=socket.socket(); s.bind(("127.0.0.1",0)); s.listen(); print(s.getsockname()[1], flush=True); time.sleep(60)' >"$WORK/port" &
holder=$!
for _ in $(seq 50); do [[ -s "$WORK/port" ]] && break; sleep 0.1; done
expect_exit 1 "cannot serve metrics on 127.0.0.1:$(cat "$WORK/port"): bind: Address already in use \(the port is taken" \
  "$DDPM" train "${COMMON[@]}" --set "run.dir=$WORK/port_run" --set "monitoring.base_port=$(cat "$WORK/port")" --progress plain
kill "$holder" 2>/dev/null

finish
