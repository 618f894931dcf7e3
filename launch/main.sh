#!/usr/bin/env bash
# The main job of the README: set up, train the default model (Fashion-MNIST, configs/fashion_mnist.yaml) for a
# few minutes on the CPU, sample a grid of images from its EMA weights, and evaluate its variational bound on a
# few test images. Extra arguments go to `ddpm train` (e.g. --set train.steps=300). Run again, it resumes.
set -euo pipefail
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO_ROOT"
bash launch/setup.sh
source launch/env.sh
DDPM="${DDPM_BUILD_DIR:-$REPO_ROOT/build}/ddpm"
CONFIG=configs/fashion_mnist.yaml
RUN_DIR=runs/fashion_mnist

"$DDPM" --version
"$DDPM" train --config "$CONFIG" "$@"
"$DDPM" sample --config "$CONFIG" --num-images 64 --seed 0 --output "$RUN_DIR/samples.png"
"$DDPM" eval --config "$CONFIG" --num-images 32 --output "$RUN_DIR/bound.json"
echo "samples: $RUN_DIR/samples.png   bound: $RUN_DIR/bound.json   log: $RUN_DIR/train_log.jsonl"
