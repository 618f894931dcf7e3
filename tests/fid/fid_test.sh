#!/usr/bin/env bash
# `ddpm fid` end to end, as a user runs it, with a small TorchScript network in place of Inception (the interface is
# the same: float32 [N, 3, H, W] in [0, 255] -> [N, D]): its statistics equal numpy's np.mean / np.cov of the same
# network's features computed in Python (float64, 1e-6), the saved .npz is pytorch-fid's layout, the FID equals
# pytorch-fid's calculate_frechet_distance (scipy's sqrtm) on those statistics, 1, 2 and 3 ranks give the same
# statistics, an .npz of samples, a folder of PNGs of the same images and a config's data set agree, and bad input
# exits 1 with one message naming the file (and the key) and writes nothing.
# Usage: fid_test.sh DDPM_BINARY COMPARE_CHECKPOINTS SOURCE_DIR
set -uo pipefail
# shellcheck source=../lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
require_args 3 "fid_test.sh DDPM_BINARY COMPARE_CHECKPOINTS SOURCE_DIR" "$@"
DDPM="$(realpath -- "$1")"
SRC="$(realpath -- "$3")"
# shellcheck source=../../launch/env.sh
source "$SRC/launch/env.sh"
PYTHON="${DDPM_TORCH_ENV:-$HOME/.cache/ddpm/torch-$DDPM_TORCH_VERSION}/bin/python"
REF="$SRC/tests/fid/fid_reference.py"
require_executables "$DDPM" "$PYTHON"
require_files "$REF" /usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz "$SRC/configs/smoke.yaml"
require_commands mpirun
"$PYTHON" -c "import numpy, torch, PIL" 2>/dev/null || harness_error "$PYTHON lacks numpy, torch or PIL (bash launch/setup.sh)"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}" OMPI_MCA_rmaps_base_oversubscribe=1 OMPI_MCA_btl="${OMPI_MCA_btl:-self,vader}"
skipped=0

FX="$WORK/fx"
mkdir -p "$FX" "$WORK/out"
"$PYTHON" "$REF" make "$FX" || harness_error "fid_reference.py make failed"
cd "$WORK" || harness_error "cannot enter $WORK"

# reference CHECK ARGS...: fid_reference.py's verdict as a check (0 ok, 1 fail, anything else a harness error).
reference() {
  local name="$1" output status
  shift
  output="$("$PYTHON" "$REF" "$@" 2>&1)"
  status=$?
  case $status in
    0) ok "$name: ${output//$'\n'/; }" ;;
    1) fail "$name: ${output//$'\n'/; }" ;;
    *) harness_error "fid_reference.py $* exited $status: $output" ;;
  esac
}

# run_ddpm LOG ARGS...: ddpm fid ARGS with its output in LOG; false (and the log's tail shown) when it fails.
run_ddpm() {
  local log="$1" status
  shift
  "$@" >"$log" 2>&1
  status=$?
  started "$status" "$1"
  if ((status != 0)); then
    echo "    \$ $* -> exit $status"
    tail -n 4 "$log" | sed 's/^/    | /'
  fi
  return "$status"
}

# ---- statistics against numpy -----------------------------------------------------------------------------------
NET="$FX/net.pt"
if run_ddpm out/a1.log "$DDPM" fid --inception "$NET" "$FX/a.npz" --output out/a1.npz --batch-size 7 --progress plain; then
  ok "ddpm fid wrote the statistics of an image .npz"
  grep -q "^fid 61/61 images .* images/s" out/a1.log && ok "a progress line on rank 0 (61/61 images, images/s)" ||
    fail "no progress line 'fid 61/61 images ... images/s' in: $(tr '\n' '|' <out/a1.log)"
  grep -q "^statistics of 61 images (D = 16)" out/a1.log && ok "it says 61 images, D = 16" ||
    fail "no 'statistics of 61 images (D = 16)' in: $(tr '\n' '|' <out/a1.log)"
else
  fail "ddpm fid --output on a.npz failed"
fi
"$PYTHON" "$REF" stats "$NET" "$FX/a.npz" out/a_numpy.npz || harness_error "fid_reference.py stats a.npz failed"
"$PYTHON" "$REF" stats "$NET" "$FX/b.npz" out/b_numpy.npz || harness_error "fid_reference.py stats b.npz failed"
"$PYTHON" "$REF" stats "$NET" "$FX/gray.npz" out/gray_numpy.npz || harness_error "fid_reference.py stats gray.npz failed"
[[ -f out/a1.npz ]] && reference "mu, sigma = numpy's mean and cov of the same features (float64 [16], [16, 16])" \
  compare out/a1.npz out/a_numpy.npz 1e-6

# Gray samples (C = 1, the archive's only array, not arr_0) go through the network as 3 equal channels.
if run_ddpm out/gray.log "$DDPM" fid --inception "$NET" "$FX/gray.npz" --output out/gray.npz; then
  reference "gray samples (the only array, C = 1) = numpy's statistics of the channel repeated 3 times" \
    compare out/gray.npz out/gray_numpy.npz 1e-6
else
  fail "ddpm fid on gray.npz failed"
fi

# ---- 1 = 2 = 3 ranks ---------------------------------------------------------------------------------------------
for ranks in 2 3; do
  if run_ddpm "out/a$ranks.log" mpirun -np "$ranks" --oversubscribe "$DDPM" fid --inception "$NET" "$FX/a.npz" \
    --output "out/a$ranks.npz" --batch-size 7 --progress plain; then
    [[ -f out/a1.npz ]] && reference "$ranks ranks give the statistics of 1 rank" compare "out/a$ranks.npz" out/a1.npz 1e-12
  else
    fail "mpirun -np $ranks ddpm fid failed"
  fi
done

# ---- the FID against pytorch-fid --------------------------------------------------------------------------------
if run_ddpm out/ab.log "$DDPM" fid --inception "$NET" "$FX/a.npz" "$FX/b.npz" --json out/ab.json; then
  line="$(grep '^FID ' out/ab.log)"
  [[ "$line" =~ ^FID\ [0-9]+\.[0-9]{4}\ \(A:\ 61\ images,\ B:\ 45\ images\)$ ]] && ok "prints '$line'" ||
    fail "expected 'FID x.xxxx (A: 61 images, B: 45 images)', got '$line'"
  value="$("$PYTHON" -c 'import json,sys; r=json.load(open(sys.argv[1])); assert r["a"]["images"]==61 and r["b"]["dimension"]==16; print(repr(r["fid"]))' out/ab.json)" ||
    harness_error "cannot read out/ab.json"
  if "$PYTHON" -c "import pytorch_fid, scipy" 2>/dev/null; then
    reference "the FID = pytorch-fid's calculate_frechet_distance (scipy sqrtm) of numpy's statistics" \
      fid out/a_numpy.npz out/b_numpy.npz "$value" 1e-6
  else
    echo "skip: pytorch-fid or scipy not installed in $PYTHON (launch/setup.sh install_fid_tools): no FID reference"
    skipped=$((skipped + 1))
  fi
  # The same from the saved statistics alone (no network), and from statistics + a folder of the same images.
  if run_ddpm out/stats_only.log "$DDPM" fid out/a1.npz "$FX/b.npz" --inception "$NET" --output out/b.npz &&
     run_ddpm out/stats_only2.log "$DDPM" fid out/a1.npz out/b.npz --json out/stats_only.json; then
    "$PYTHON" - "$value" out/stats_only.json <<'PY' && ok "statistics files give the FID the images gave" || fail "statistics files give another FID"
import json, sys
want, got = float(sys.argv[1]), json.load(open(sys.argv[2]))["fid"]
print(f"    images {want!r}, statistics {got!r}")
sys.exit(0 if abs(got - want) <= 1e-12 * abs(want) else 1)
PY
    grep -q "(A: 61 images, B: 45 images)" out/stats_only2.log && ok "the counts come from the statistics files" ||
      fail "no image counts in: $(cat out/stats_only2.log)"
  else
    fail "ddpm fid on statistics files failed"
  fi
else
  fail "ddpm fid A B failed"
fi

# ---- the same images from a folder and from a config's data set -------------------------------------------------
if run_ddpm out/png.log "$DDPM" fid --inception "$NET" "$FX/b_png" --output out/b_png.npz; then
  reference "a folder of PNGs = the .npz of the same images" compare out/b_png.npz out/b_numpy.npz 1e-6
else
  fail "ddpm fid on a folder of PNGs failed"
fi
if run_ddpm out/cfg.log "$DDPM" fid --inception "$NET" --config "$SRC/configs/smoke.yaml" --split test --num-images 40 \
  --output out/fashion_cfg.npz && run_ddpm out/cfg2.log "$DDPM" fid --inception "$NET" "$FX/fashion40.npz" --output out/fashion_npz.npz; then
  reference "--config smoke.yaml --split test --num-images 40 = the first 40 test images as an .npz" \
    compare out/fashion_cfg.npz out/fashion_npz.npz 1e-12
else
  fail "ddpm fid --config failed"
fi

# ---- bad input: exit 1, one message naming the file (and the key), nothing written -------------------------------
# refused FRAGMENT ARGS...: ddpm fid ARGS --output $WORK/out/refused.npz exits 1 with FRAGMENT and writes no file.
refused() {
  local fragment="$1"
  shift
  rm -f out/refused.npz
  expect_exit 1 "$fragment" "$DDPM" fid "$@"
  if compgen -G "out/refused*" >/dev/null; then fail "a refused command left $(ls out/refused*)"; fi
}
S="$FX"
refused "--inception $S/none.pt: no such file" --inception "$S/none.pt" "$S/a.npz" --output out/refused.npz
refused "--inception $S/a.npz: not a TorchScript module" --inception "$S/a.npz" "$S/a.npz" --output out/refused.npz
refused "--inception $S/four_dim.pt: the module returned Float \[61, 15, 1, 1\] for 61 images, expected floating activations \[61, D\]" \
  --inception "$S/four_dim.pt" "$S/a.npz" --output out/refused.npz
refused "$S/no_arr0.npz: no array 'arr_0' of images \(the archive holds images, labels\)" --inception "$NET" "$S/no_arr0.npz" --output out/refused.npz
refused "$S/float_images.npz: 'arr_0' is float32 \[61, 12, 10, 3\], expected uint8 images \[N, H, W, C\]" \
  --inception "$NET" "$S/float_images.npz" --output out/refused.npz
refused "$S/chw_images.npz: 'arr_0' is uint8 \[61, 3, 12, 10\], expected uint8 images \[N, H, W, C\] with C = 1 or 3" \
  --inception "$NET" "$S/chw_images.npz" --output out/refused.npz
refused "the statistics differ in dimension: $S/a.npz \(arr_0: 61 images 12x10x3\) has D = 16, $S/d8_stats.npz has D = 8" \
  --inception "$NET" "$S/a.npz" "$S/d8_stats.npz" --output out/refused.npz
refused "$S/no_sigma.npz: no array 'sigma'" out/a1.npz "$S/no_sigma.npz" --json out/refused.json
refused "$S/float32_stats.npz: 'mu' is float32 \[16\], expected float64 \[D\]" out/a1.npz "$S/float32_stats.npz" --json out/refused.json
refused "A: $S/a.npz holds images: --inception PATH" "$S/a.npz" "$S/b.npz" --json out/refused.json
refused "$S/one.npz: 1 image\(s\): FID statistics need at least 2" --inception "$NET" "$S/one.npz" --output out/refused.npz
refused "$S/mixed_png/0001a.png is 9x9 pixels, but $S/mixed_png/0000.png \(the first image of $S/mixed_png\) is 10x12" \
  --inception "$NET" "$S/mixed_png" --output out/refused.npz
refused "A: $S/none.npz: no such file or directory" --inception "$NET" "$S/none.npz" --output out/refused.npz
refused "one source: --output PATH is needed" --inception "$NET" "$S/a.npz"
refused "--output: both sources are images" --inception "$NET" "$S/a.npz" "$S/b.npz" --output out/refused.npz
# Under mpirun too: every rank fails, the job exits non-zero and nothing is written.
rm -f out/refused.npz
expect_exit 1 "no array 'arr_0' of images" mpirun -np 2 --oversubscribe "$DDPM" fid --inception "$NET" "$S/no_arr0.npz" --output out/refused.npz
[[ -e out/refused.npz ]] && fail "the refused 2-rank command wrote out/refused.npz"

finish
