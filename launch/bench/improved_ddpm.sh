#!/usr/bin/env bash
# The improved-DDPM comparison on Fashion-MNIST (README, "Improved DDPM ... Measured"): three runs of
# configs/fashion_mnist.yaml for the same number of steps, one after the other on this machine, then `ddpm eval` (the
# full bound over all T, x̂_0 clipped) of each on the same test images, a table and a PNG of the per-t terms.
#   simple_fixed_large        diffusion.loss simple, fixed_large (the DDPM baseline, the shipped config)
#   hybrid_learned_range      diffusion.loss hybrid, learned_range, uniform t
#   rescaled_kl_learned_range diffusion.loss rescaled_kl, learned_range, train.timestep_sampler loss_second_moment
# Each run's wall clock is printed beside its bits/dim: with the same steps, the same budget holds when they match.
#   IMPROVED_STEPS (1500)  IMPROVED_EVAL_IMAGES (256)  IMPROVED_DIR (runs/improved_ddpm)  DDPM (build/ddpm)
# Resumable: a finished run or evaluation is kept (delete its folder to redo it). Nothing is downloaded.
set -euo pipefail
readonly REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$REPO_ROOT"
# shellcheck source=../env.sh
source launch/env.sh
readonly DDPM="${DDPM:-$REPO_ROOT/build/ddpm}"
readonly STEPS="${IMPROVED_STEPS:-1500}"
readonly IMAGES="${IMPROVED_EVAL_IMAGES:-256}"
readonly DIR="${IMPROVED_DIR:-$REPO_ROOT/runs/improved_ddpm}"
readonly TORCH_PYTHON="${DDPM_TORCH_ENV:-${XDG_CACHE_HOME:-$HOME/.cache}/ddpm/torch-${DDPM_TORCH_VERSION}}/bin/python"
[[ -x "$DDPM" ]] || { echo "improved_ddpm.sh: $DDPM is not built (bash launch/setup.sh)" >&2; exit 1; }
[[ -x "$TORCH_PYTHON" ]] || { echo "improved_ddpm.sh: no python with numpy and Pillow at $TORCH_PYTHON (bash launch/setup.sh)" >&2; exit 1; }
mkdir -p "$DIR"

declare -A SETS=(
  [simple_fixed_large]="--set diffusion.loss=simple --set diffusion.model_variance=fixed_large"
  [hybrid_learned_range]="--set diffusion.loss=hybrid --set diffusion.model_variance=learned_range"
  [rescaled_kl_learned_range]="--set diffusion.loss=rescaled_kl --set diffusion.model_variance=learned_range --set train.timestep_sampler=loss_second_moment"
)
readonly RUNS=(simple_fixed_large hybrid_learned_range rescaled_kl_learned_range)

for name in "${RUNS[@]}"; do
  run="$DIR/$name"
  if [[ -f "$run/wall_seconds" ]]; then
    echo "== $name: trained already ($(cat "$run/wall_seconds") s)"
  else
    echo "== $name: training $STEPS steps"
    start=$(date +%s.%N)
    # shellcheck disable=SC2086
    "$DDPM" train --config configs/fashion_mnist.yaml --progress plain --set "run.dir=$run" --set "train.steps=$STEPS" \
      --set train.checkpoint_every=500 --set monitoring.enabled=false ${SETS[$name]}
    python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.1f}')" "$start" "$(date +%s.%N)" >"$run/wall_seconds"
  fi
done
for name in "${RUNS[@]}"; do
  run="$DIR/$name"
  if [[ -f "$run/bound_${IMAGES}.json" ]]; then
    echo "== $name: evaluated already"
  else
    echo "== $name: the full bound on $IMAGES test images"
    start=$(date +%s.%N)
    "$DDPM" eval --config "$run/config.yaml" --num-images "$IMAGES" --progress plain --output "$run/bound_${IMAGES}.json.part"
    mv "$run/bound_${IMAGES}.json.part" "$run/bound_${IMAGES}.json"
    python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.1f}')" "$start" "$(date +%s.%N)" >"$run/eval_seconds"
  fi
done
"$TORCH_PYTHON" launch/bench/improved_ddpm_report.py "$DIR" "$IMAGES" "${RUNS[@]}"
