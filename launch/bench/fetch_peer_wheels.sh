#!/usr/bin/env bash
# Downloads the wheels launch/bench/peer_bench.py needs on a machine that has torch and numpy but not diffusers and
# cannot reach PyPI (the GPU machine): diffusers and what importing and running its UNet2DModel needs, for
# CPython 3.10, 3.11 and 3.12 on manylinux x86_64.
#
#   bash launch/bench/fetch_peer_wheels.sh [DIR]     # DIR defaults to .cache/peer_wheels (git-ignored)
#
# For each Python, pip resolves `diffusers==$PEER_DIFFUSERS` as `pip install` would; DIR gets
# requirements-cp3XX.txt (that resolution, pinned) and the wheels (one copy of a wheel that several Pythons
# share). Left out: torch and numpy (the target has them) and the dependencies that importing and running
# UNet2DModel never loads (hf-xet: Hub downloads; regex: tokenizers; click: the hf CLI; zipp,
# importlib-metadata: backports; lazy-importer). peer_bench.py pip-installs, --no-deps from DIR alone, the
# entries of its Python's file that are not installed already. Idempotent: wheels already in DIR are kept.
#
# PYTHON          a python with pip (default the venv of launch/setup.sh)
# PEER_DIFFUSERS  diffusers version (default DDPM_DIFFUSERS_VERSION of launch/env.sh, the one launch/setup.sh installs)
# PEER_PYTHONS    Python versions (default "3.10 3.11 3.12"); name only the target's to carry less
# PEER_SKIP       more packages not to download, that the target is known to have (e.g. "pillow pyyaml")
set -euo pipefail
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
# shellcheck source=../env.sh
source "$REPO_ROOT/launch/env.sh"
DEST="${1:-$REPO_ROOT/.cache/peer_wheels}"
PYTHON="${PYTHON:-${DDPM_TORCH_ENV:-${XDG_CACHE_HOME:-$HOME/.cache}/ddpm/torch-$DDPM_TORCH_VERSION}/bin/python}"
[[ -x "$PYTHON" ]] || PYTHON=python3
NOT_NEEDED="torch numpy hf-xet regex click zipp importlib-metadata lazy-importer"
PLATFORM=(--only-binary=:all: --platform manylinux2014_x86_64)
mkdir -p "$DEST"
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT

for version in ${PEER_PYTHONS:-3.10 3.11 3.12}; do
  tag="cp${version/./}"
  # Resolve as pip would for that Python (nothing is installed; only metadata is fetched) ...
  "$PYTHON" -m pip install --quiet --dry-run --ignore-installed --report "$scratch/$tag.json" "${PLATFORM[@]}" \
    --python-version "$version" --target "$scratch/target" "diffusers==${PEER_DIFFUSERS:-$DDPM_DIFFUSERS_VERSION}"
  # ... keep what the import needs (name==version, one a line), and download those the target lacks.
  "$PYTHON" - "$scratch/$tag.json" "$NOT_NEEDED" "${PEER_SKIP:-}" "$DEST/requirements-$tag.txt" \
    "$scratch/download.txt" <<'EOF'
import json, re, sys
report, not_needed, target_has, requirements, download = sys.argv[1:]
norm = lambda name: re.sub(r"[-_.]+", "-", name).lower()
with open(requirements, "w") as req, open(download, "w") as dl:
    for item in json.load(open(report))["install"]:
        name, version = item["metadata"]["name"], item["metadata"]["version"]
        if norm(name) not in map(norm, not_needed.split()):
            req.write(f"{name}=={version}\n")
            if norm(name) not in map(norm, target_has.split()):
                dl.write(f"{name}=={version}\n")
EOF
  if [[ -s "$scratch/download.txt" ]]; then
    "$PYTHON" -m pip download --quiet --no-deps "${PLATFORM[@]}" --python-version "$version" --dest "$DEST" \
      -r "$scratch/download.txt"
  fi
  echo "[fetch_peer_wheels] $tag: $(tr '\n' ' ' <"$DEST/requirements-$tag.txt")" >&2
done
echo "[fetch_peer_wheels] $DEST: $(ls "$DEST"/*.whl 2>/dev/null | wc -l) wheels, $(du -sh "$DEST" | cut -f1)" >&2
