#!/usr/bin/env bash
# The main job of the README: set up, then show the CLI and the resolved default config.
# (The training issue turns this into a short real training run on Fashion-MNIST plus a sample grid.)
set -euo pipefail
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$REPO_ROOT/launch/setup.sh"
source "$REPO_ROOT/launch/env.sh"
DDPM="${DDPM_BUILD_DIR:-$REPO_ROOT/build}/ddpm"
"$DDPM" --version
"$DDPM" --help
"$DDPM" config --config "$REPO_ROOT/configs/fashion_mnist.yaml" "$@"
