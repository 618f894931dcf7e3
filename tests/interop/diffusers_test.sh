#!/usr/bin/env bash
# ddpm and diffusers, both ways, against diffusers itself (tests/interop/diffusers_reference.py in the torch venv):
#   export   a trained smoke model (fixed variance, and learned_range) loads with UNet2DModel.from_pretrained and
#            DDPMPipeline, whose scheduler has ddpm's betas and which samples; diffusers' ε = ddpm's on the same
#            inputs within 1e-5 · max(1, max |ε|) (float32, CPU: the round-off grows with the output's scale; a random
#            CIFAR-10 U-Net gives |ε| near 5, a trained smoke one below 1), the plain forward and the sampler's UNetInference alike; the same
#            weights built with the other downsampling padding differ (the comparison can see a wrong padding)
#   round    export → import → export gives every tensor bitwise; the imported run fine-tunes, samples, evaluates;
#   trip     a bfloat16 export imports to exactly the bf16-rounded weights
#   import   UNet2DModels made and saved by diffusers (random weights; the smoke and CIFAR-10 layouts, float32,
#            bfloat16 and float16): ddpm's ε of the imported checkpoint = diffusers' within 1e-5 (bfloat16: of the same rounded
#            weights)
# Skipped (77) when the torch venv has no diffusers or safetensors (launch/setup.sh installs them).
# Usage: diffusers_test.sh DDPM_BINARY COMPARE_CHECKPOINTS SOURCE_DIR INTEROP_EPS
set -uo pipefail
# shellcheck source=../lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
require_args 4 "diffusers_test.sh DDPM_BINARY COMPARE_CHECKPOINTS SOURCE_DIR INTEROP_EPS" "$@"
DDPM="$(realpath -- "$1")"
COMPARE="$(realpath -- "$2")"
SRC="$(realpath -- "$3")"
EPS_TOOL="$(realpath -- "$4")"
# shellcheck source=../../launch/env.sh
source "$SRC/launch/env.sh"
PYTHON="${DDPM_TORCH_ENV:-$HOME/.cache/ddpm/torch-$DDPM_TORCH_VERSION}/bin/python"
REF="$SRC/tests/interop/diffusers_reference.py"
require_executables "$DDPM" "$COMPARE" "$EPS_TOOL"
require_files "$REF"
if ! [[ -x "$PYTHON" ]] || ! missing="$("$PYTHON" -c "import diffusers, safetensors" 2>&1)"; then
  echo "skip: diffusers or safetensors is not installed in $PYTHON (bash launch/setup.sh installs them): ${missing:-no python}"
  exit 77
fi
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
cd "$WORK" || harness_error "cannot enter $WORK"
SMOKE=(--config "$SRC/configs/smoke.yaml" --set monitoring.enabled=false)
CIFAR=(--config "$SRC/configs/cifar10.yaml" --set run.device=cpu)
TOL=1e-5

ref() { "$PYTHON" "$REF" "$@" || { local s=$?; ((s > 1)) && harness_error "diffusers_reference.py $1 failed ($s)"; return $s; }; }

# parity NAME MODEL_DIR CONFIG CHECKPOINT PREFIX INPUTS: ddpm's ε (both forwards) against diffusers' within TOL.
parity() {
  local name="$1" model="$2" config="$3" ckpt="$4" prefix="$5" inputs="$6"
  "$EPS_TOOL" "$config" "$ckpt" "$prefix" "$inputs" "$name.ddpm.safetensors" || harness_error "interop_eps failed for $name"
  ref eps "$model" "$inputs" "$name.diffusers.safetensors"
  local output
  for ours in eps eps_inference; do
    if output="$(ref compare "$name.ddpm.safetensors" "$name.diffusers.safetensors" "$ours" eps "$TOL")"; then
      ok "$name: ddpm's $ours = diffusers' UNet2DModel ($output)"
    else
      fail "$name: ddpm's $ours differs from diffusers' ($output)"
    fi
  done
}

# ---- Export a trained smoke model, fixed and learned_range. ------------------------------------------------------
"$DDPM" train "${SMOKE[@]}" --set "run.dir=$WORK/run" >train.log 2>&1 || { tail -n 5 train.log; harness_error "smoke training failed"; }
"$DDPM" train "${SMOKE[@]}" --set "run.dir=$WORK/run_lr" --set diffusion.model_variance=learned_range \
  --set diffusion.loss=hybrid --set train.steps=10 >train_lr.log 2>&1 || { tail -n 5 train_lr.log; harness_error "learned_range training failed"; }
run_ckpt="$(newest_ckpt run)"
ref inputs inputs_smoke.safetensors --channels 1 --size 28 --batch 4 --timesteps 100 --seed 1 ||
  harness_error "cannot make the inputs"

if "$DDPM" export "${SMOKE[@]}" --set "run.dir=$WORK/run" --output exported >export.log 2>&1; then
  ok "ddpm export: $(head -n 1 export.log)"
else
  fail "ddpm export failed: $(tail -n 3 export.log)"
fi
for f in model_index.json unet/config.json unet/diffusion_pytorch_model.safetensors scheduler/scheduler_config.json; do
  [[ -f "exported/$f" ]] || fail "the export has no $f"
done
"$DDPM" config "${SMOKE[@]}" --set "run.dir=$WORK/run" | tail -n +2 >smoke.yaml
parity exported exported smoke.yaml "$run_ckpt" ema_0.99 inputs_smoke.safetensors
if output="$(ref pipeline exported 100 linear)"; then ok "DDPMPipeline.from_pretrained loads the export, its scheduler has ddpm's betas and it samples: $output"; else fail "DDPMPipeline on the export: $output"; fi
# The negative control: the same weights in diffusers' other downsampling (padding 0) are another function.
ref eps exported inputs_smoke.safetensors padding0.safetensors --downsample-padding 0
if output="$(ref differ exported.ddpm.safetensors padding0.safetensors eps eps 1e-3)"; then
  ok "the weights under downsample_padding 0 give another ε ($output): the parity sees the padding"
else
  fail "the padding made no difference: $output"
fi

"$DDPM" export "${SMOKE[@]}" --set "run.dir=$WORK/run_lr" --set diffusion.model_variance=learned_range \
  --set diffusion.loss=hybrid --output exported_lr >export_lr.log 2>&1 || fail "export of learned_range: $(tail -n 2 export_lr.log)"
"$DDPM" config "${SMOKE[@]}" --set "run.dir=$WORK/run_lr" --set diffusion.model_variance=learned_range \
  --set diffusion.loss=hybrid | tail -n +2 >smoke_lr.yaml
parity exported_lr exported_lr smoke_lr.yaml "$(newest_ckpt run_lr)" ema_0.99 inputs_smoke.safetensors
if output="$(ref pipeline exported_lr 100 linear)"; then ok "DDPMPipeline samples the learned_range export: $output"; else fail "DDPMPipeline on the learned_range export: $output"; fi

# ---- Round trips. -------------------------------------------------------------------------------------------------
if "$DDPM" import --from exported "${SMOKE[@]}" --output imported >import.log 2>&1; then
  ok "ddpm import: $(head -n 1 import.log)"
else
  fail "ddpm import of the export failed: $(tail -n 3 import.log)"
fi
imported="$(ckpt_path imported 0)"
# (That its model and every EMA are the exported weights, bit for bit, is test_diffusers_layout's round trip.)
if verify_ckpt "$imported"; then ok "the imported checkpoint verifies (magic, lengths, CRC)"; else fail "the imported checkpoint does not verify: $VERIFY_OUT"; fi
"$DDPM" export --config imported/config.yaml --output reexported >reexport.log 2>&1 || fail "re-export: $(tail -n 2 reexport.log)"
if output="$(ref same-tensors exported/unet/diffusion_pytorch_model.safetensors reexported/unet/diffusion_pytorch_model.safetensors)"; then
  ok "export → import → export: $output"
else
  fail "the round trip changed the weights: $output"
fi
cmp -s exported/unet/config.json reexported/unet/config.json && ok "and the same config.json" || fail "the round trip changed config.json"
"$DDPM" export "${SMOKE[@]}" --set "run.dir=$WORK/run" --dtype bfloat16 --output exported_bf16 >export_bf16.log 2>&1 ||
  fail "bfloat16 export: $(tail -n 2 export_bf16.log)"
"$DDPM" import --from exported_bf16 "${SMOKE[@]}" --output imported_bf16 >import_bf16.log 2>&1 || fail "bfloat16 import: $(tail -n 2 import_bf16.log)"
"$DDPM" export --config imported_bf16/config.yaml --output reexported_bf16 >/dev/null 2>&1 || fail "re-export of the bfloat16 import"
if output="$(ref same-tensors exported_bf16/unet/diffusion_pytorch_model.safetensors reexported_bf16/unet/diffusion_pytorch_model.safetensors)"; then
  ok "a bfloat16 export imports to exactly its bf16 weights: $output"
else
  fail "the bfloat16 round trip: $output"
fi
# The imported run is a run: train fine-tunes from step 0, sample draws from it.
if "$DDPM" train --config imported/config.yaml --set train.steps=2 --set train.checkpoint_every=2 >finetune.log 2>&1 &&
  grep -q "resumed at step 0" finetune.log && [[ -f "$(ckpt_path imported 2)" ]]; then
  ok "ddpm train fine-tunes the imported run from step 0 to step 2"
else
  fail "fine-tuning the import: $(grep -v '^ ' finetune.log | tail -n 3)"
fi
grep -q "warning" finetune.log && fail "fine-tuning an import warned: $(grep warning finetune.log)"
if "$DDPM" sample --config imported/config.yaml --checkpoint "$imported" --num-images 2 --steps 10 --output imported.png >sample.log 2>&1; then
  ok "ddpm sample draws from the imported checkpoint"
else
  fail "sampling the import: $(tail -n 2 sample.log)"
fi
if "$DDPM" eval --config imported/config.yaml --checkpoint "$imported" --num-images 2 --steps 10 --output eval.json >eval.log 2>&1 &&
  grep -q '"total_bpd"' eval.json; then
  ok "ddpm eval evaluates the imported checkpoint: $(grep -o 'bits/dim [0-9.]*' eval.log)"
else
  fail "evaluating the import: $(tail -n 2 eval.log)"
fi

# ---- Models made by diffusers itself. -----------------------------------------------------------------------------
made() {  # made NAME LAYOUT DTYPE CONFIG_ARGS...: make, import, compare
  local name="$1" layout="$2" dtype="$3"
  shift 3
  ref make "made_$name" "$layout" "$dtype" 7 || harness_error "cannot make the $layout model"
  if ! "$DDPM" import --from "made_$name" "$@" --output "imported_$name" >"import_$name.log" 2>&1; then
    fail "import of diffusers' $name model: $(tail -n 3 "import_$name.log")"
    return
  fi
  ok "ddpm import of a UNet2DModel saved by diffusers ($name, $dtype): $(head -n 1 "import_$name.log")"
  "$DDPM" config --config "imported_$name/config.yaml" | tail -n +2 >"$name.yaml"
  parity "made_$name" "made_$name" "$name.yaml" "$(ckpt_path "imported_$name" 0)" model "${layout}_inputs.safetensors"
}
ref inputs smoke_inputs.safetensors --channels 1 --size 28 --batch 4 --timesteps 100 --seed 2 || harness_error "inputs"
ref inputs cifar10_inputs.safetensors --channels 3 --size 32 --batch 2 --timesteps 1000 --seed 3 || harness_error "inputs"
cp smoke_inputs.safetensors smoke_learned_range_inputs.safetensors
made smoke smoke float32 "${SMOKE[@]}"
made smoke_bf16 smoke bfloat16 "${SMOKE[@]}"
made smoke_fp16 smoke float16 "${SMOKE[@]}"
made smoke_learned_range smoke_learned_range float32 "${SMOKE[@]}" --set diffusion.model_variance=learned_range --set diffusion.loss=hybrid
made cifar10 cifar10 float32 "${CIFAR[@]}"
finish
