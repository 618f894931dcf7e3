# shellcheck shell=bash
# Sourced by the scripts of launch/ and tests/ (source "$REPO_ROOT/launch/env.sh"): the pinned versions, in one
# place, and Open MPI's environment. Plain assignments with defaults only: safe under `set -euo pipefail` and
# when sourced twice; each pin can be overridden from the environment.

# torch wheel from PyPI that provides LibTorch (setup.sh's venv: DDPM_TORCH_ENV defaults to .../ddpm/torch-<this>).
export DDPM_TORCH_VERSION="${DDPM_TORCH_VERSION:-2.11.0}"
# diffusers of the PyTorch peer bench/peer_bench.py (newest for Python 3.10): setup.sh, bench/fetch_peer_wheels.sh.
export DDPM_DIFFUSERS_VERSION="${DDPM_DIFFUSERS_VERSION:-0.41.0}"
# The FID tools of tests/fid and launch/fid/export_inception.py (setup.sh's install_fid_tools): pytorch-fid (its
# InceptionV3 and calculate_frechet_distance), scipy (its sqrtm) and the torchvision that matches the torch pin (0.26
# goes with torch 2.11; another would make pip replace torch).
export DDPM_PYTORCH_FID_VERSION="${DDPM_PYTORCH_FID_VERSION:-0.3.0}"
export DDPM_SCIPY_VERSION="${DDPM_SCIPY_VERSION:-1.17.1}"
export DDPM_TORCHVISION_VERSION="${DDPM_TORCHVISION_VERSION:-0.26.0}"

# Open MPI: let it run as root (containers, CI) and oversubscribe small machines.
if [ "$(id -u)" -eq 0 ]; then
  export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
fi
export OMPI_MCA_rmaps_base_oversubscribe="${OMPI_MCA_rmaps_base_oversubscribe:-1}"
