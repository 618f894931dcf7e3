#!/usr/bin/env bash
# launch/fid/export_inception.py against pytorch-fid itself: the exported TorchScript file (random weights, --random-init)
# run by `ddpm fid` on a folder of PNGs gives the statistics that pytorch-fid's own InceptionV3 (built by its
# fid_inception_v3 with the same weights) and its pipeline from files (PIL, convert('RGB'), ToTensor, get_activations)
# give, to 1e-4: the resize to 299 x 299 (bilinear, align_corners=False), the scaling ([0, 255] -> [-1, 1]), gray to RGB
# and the pool3 features. A resize with align_corners=True is shown to miss, so the comparison can see a wrong resize.
# Skipped (77) when pytorch-fid, torchvision or scipy is missing from the torch venv (launch/setup.sh installs them).
# Usage: inception_parity_test.sh DDPM_BINARY COMPARE_CHECKPOINTS SOURCE_DIR
set -uo pipefail
# shellcheck source=../lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
require_args 3 "inception_parity_test.sh DDPM_BINARY COMPARE_CHECKPOINTS SOURCE_DIR" "$@"
DDPM="$(realpath -- "$1")"
SRC="$(realpath -- "$3")"
# shellcheck source=../../launch/env.sh
source "$SRC/launch/env.sh"
PYTHON="${DDPM_TORCH_ENV:-$HOME/.cache/ddpm/torch-$DDPM_TORCH_VERSION}/bin/python"
REF="$SRC/tests/fid/fid_reference.py"
require_executables "$DDPM" "$PYTHON"
require_files "$REF" "$SRC/launch/fid/export_inception.py"
if ! missing="$("$PYTHON" -c "import pytorch_fid, torchvision, scipy" 2>&1)"; then
  echo "skip: pytorch-fid, torchvision or scipy is not installed in $PYTHON (bash launch/setup.sh: install_fid_tools): ${missing##*$'\n'}"
  exit 77
fi
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-2}"
cd "$WORK" || harness_error "cannot enter $WORK"

"$PYTHON" "$SRC/launch/fid/export_inception.py" --random-init --seed 3 --save-state-dict state_dict.pt \
  --output inception.pt >export.log 2>&1 || { cat export.log; harness_error "export_inception.py --random-init failed"; }
ok "export_inception.py --random-init wrote a TorchScript file: $(tail -n 1 export.log)"
"$PYTHON" "$REF" pngs "$WORK/images" || harness_error "fid_reference.py pngs failed"

# compare NAME A B RTOL: 0 within, 1 not (printed), anything else a harness error.
compare() {
  local output status
  output="$("$PYTHON" "$REF" compare "$2" "$3" "$4" 2>&1)"
  status=$?
  ((status > 1)) && harness_error "fid_reference.py compare $2 $3 exited $status: $output"
  echo "    ${output//$'\n'/; }"
  return "$status"
}

for kind in rgb gray; do
  if ! "$DDPM" fid --inception inception.pt "images/$kind" --output "ddpm_$kind.npz" --batch-size 4 >"ddpm_$kind.log" 2>&1; then
    fail "ddpm fid on images/$kind failed: $(tail -n 2 "ddpm_$kind.log" | tr '\n' '|')"
    continue
  fi
  "$PYTHON" "$REF" pytorch-fid-stats state_dict.pt "images/$kind" "pytorch_fid_$kind.npz" 2>"pytorch_fid_$kind.log" ||
    harness_error "pytorch-fid's statistics of images/$kind could not be computed: $(tail -n 2 "pytorch_fid_$kind.log")"
  if compare "$kind" "ddpm_$kind.npz" "pytorch_fid_$kind.npz" 1e-4; then
    ok "$kind PNGs: ddpm fid through the exported file = pytorch-fid's InceptionV3 from the files (1e-4)"
  else
    fail "$kind PNGs: ddpm fid through the exported file differs from pytorch-fid"
  fi
done

"$PYTHON" "$REF" pytorch-fid-stats state_dict.pt images/rgb pytorch_fid_aligned.npz --align-corners 2>pytorch_fid_aligned.log ||
  harness_error "pytorch-fid's statistics with align_corners=True could not be computed: $(tail -n 2 pytorch_fid_aligned.log)"
if [[ -f ddpm_rgb.npz ]]; then
  if compare "align_corners" ddpm_rgb.npz pytorch_fid_aligned.npz 1e-4; then
    fail "the comparison cannot tell align_corners=True from False: the random features are too insensitive to test the resize"
  else
    ok "a resize with align_corners=True differs by more than the tolerance (the comparison sees the resize)"
  fi
fi
finish
