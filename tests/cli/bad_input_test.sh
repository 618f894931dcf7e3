#!/usr/bin/env bash
# Bad input, as a user meets it: every row of tests/cli/bad_inputs.tsv (config keys and values, --set, CLI arguments,
# data files, checkpoints and run directories, world-size changes) is run for real; its exit code and a fixed
# message fragment (grep -F on stdout + stderr) must be the ones the table gives. Nothing lost: after every `train`
# row, each checkpoint of its run directory that verified before is byte-identical (sha256), config.yaml too when
# the row is refused, and when the row succeeded its newest checkpoint verifies. Rows whose status is `bug` record
# what the product SHOULD do; they are skipped (and listed) until the product is fixed.
# Usage: bad_input_test.sh DDPM COMPARE_CHECKPOINTS SOURCE_DIR
# BAD_INPUT_FILTER=REGEX runs only the rows whose name matches; BAD_INPUT_RUN_BUGS=1 also runs the `bug` rows and
# reports each as still a bug or FIXED (without failing).
set -uo pipefail
# shellcheck source=../lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
require_args 3 "bad_input_test.sh DDPM COMPARE_CHECKPOINTS SOURCE_DIR" "$@"
DDPM="$1"
COMPARE="$2"
SRC="$3"
TABLE="$SRC/tests/cli/bad_inputs.tsv"

# The environment ctest gives the MPI tests (DDPM_MPI_ENV), for runs by hand.
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
export OMPI_MCA_rmaps_base_oversubscribe="${OMPI_MCA_rmaps_base_oversubscribe:-1}"
export OMPI_MCA_btl="${OMPI_MCA_btl:-self,vader}"
if [[ $(id -u) -eq 0 ]]; then export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1; fi

require_executables "$DDPM" "$COMPARE"
require_files "$TABLE" "$SRC/configs/smoke.yaml" /usr/share/datasets/fashion-mnist
require_commands mpirun python3 gzip sha256sum timeout truncate

MPIRUN="mpirun --oversubscribe"
IDX="$WORK/fx/idx_data"
# Everything tiny: the smoke config, 25 diffusion steps, 2 training steps with a checkpoint after each, no metrics
# server, a 64-image IDX data set. {TINY} names {RUN}; a later --set in a row wins.
TINY="--config $SRC/configs/smoke.yaml --set run.dir={RUN} --set data.path=$IDX --set diffusion.timesteps=25"
TINY+=" --set train.steps=2 --set train.checkpoint_every=1 --set monitoring.enabled=false"
mkdir -p "$WORK/fx" "$WORK/runs" "$WORK/out"

# ---------------------------------------------------------------------------------------------------------------
# Fixtures: each setup name is a small recipe. Data, config and checkpoint fixtures are built once, under
# $WORK/fx/<setup> ({FX}); run-directory setups fill a fresh {RUN} for each row.

write_idx_data() {  # write_idx_data DIR: 64 train and 16 test images (raw IDX) from the installed Fashion-MNIST
  python3 - "$1" <<'EOF'
import gzip, os, struct, sys
src, out = "/usr/share/datasets/fashion-mnist", sys.argv[1]
os.makedirs(out, exist_ok=True)
for prefix, n in (("train", 64), ("t10k", 16)):
    with gzip.open(f"{src}/{prefix}-images-idx3-ubyte.gz") as f:
        f.read(16)
        pixels = f.read(n * 28 * 28)
    with gzip.open(f"{src}/{prefix}-labels-idx1-ubyte.gz") as f:
        f.read(8)
        labels = f.read(n)
    open(f"{out}/{prefix}-images-idx3-ubyte", "wb").write(struct.pack(">IIII", 0x803, n, 28, 28) + pixels)
    open(f"{out}/{prefix}-labels-idx1-ubyte", "wb").write(struct.pack(">II", 0x801, n) + labels)
EOF
}

write_pngs() {  # write_pngs DIR: two valid 40x40 gray PNGs, and truncated.png cut to 60 bytes
  python3 - "$1" <<'EOF'
import os, struct, sys, zlib
out = sys.argv[1]
os.makedirs(out, exist_ok=True)
w = h = 40
raw = b"".join(b"\x00" + bytes((x * 7 + y * 3) % 256 for x in range(w)) for y in range(h))
chunk = lambda t, d: struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xFFFFFFFF)
png = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)) +
       chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))
open(f"{out}/a.png", "wb").write(png)
open(f"{out}/b.png", "wb").write(png)
open(f"{out}/truncated.png", "wb").write(png[:60])
EOF
}

corrupt() { printf 'garbage' | dd of="$1" bs=1 seek=100 conv=notrunc 2>/dev/null; }  # 7 bytes at offset 100

write_config_files() {  # write_config_files DIR: one small bad config file per case (line numbers are fixed)
  local d="$1"
  mkdir -p "$d" "$d/a_directory.yaml"
  printf 'trian:\n  steps: 2\n' >"$d/typo_section.yaml"
  printf 'foo:\n  steps: 2\n' >"$d/unknown_section.yaml"
  printf 'train:\n  step: 2\n' >"$d/typo_key.yaml"
  printf 'model:\n  depth: 4\n' >"$d/unknown_key.yaml"
  printf 'train:\n  steps: two\n' >"$d/string_for_int.yaml"
  printf 'run:\n  dir: r\r' >"$d/carriage_return.yaml"  # a lone CR at the end: it lands in the value
  printf 'train:\n  steps: [1, 2]\n' >"$d/list_for_int.yaml"
  printf 'train:\n  steps: 2.5\n' >"$d/float_for_int.yaml"
  printf 'train:\n  steps: 99999999999999999999\n' >"$d/int_overflow.yaml"
  printf 'train:\n  steps:\n' >"$d/null_value.yaml"
  printf 'model:\n  channel_mult: 2\n' >"$d/scalar_for_list.yaml"
  printf 'model:\n  channel_mult: [1, x]\n' >"$d/bad_list_entry.yaml"
  printf 'run:\n  seed: -3\n' >"$d/negative_seed.yaml"
  printf 'train:\n  lr: -1\n' >"$d/negative_lr.yaml"
  printf 'train:\n  lr: .nan\n' >"$d/nan_lr.yaml"
  printf 'diffusion:\n  schedule: cosin\n' >"$d/typo_schedule.yaml"
  printf 'diffusion:\n  timesteps: 10\n' >"$d/few_timesteps.yaml"
  printf 'train: 5\n' >"$d/section_not_mapping.yaml"
  printf -- '- run\n- train\n' >"$d/top_level_list.yaml"
  printf 'train:\n  steps: 2\n   lr: 1\n' >"$d/bad_indent.yaml"
  printf 'train:\n  steps: [1, 2\n' >"$d/unclosed_list.yaml"
  printf 'train:\n\tsteps: 2\n' >"$d/tab_indent.yaml"
  printf 'train:\n  steps: 2\n  steps: 3\n' >"$d/duplicate_key.yaml"
  printf 'train:\n  steps: 2\ntrain:\n  lr: 0.1\n' >"$d/duplicate_section.yaml"
  printf '? [run, data]\n: 2\n' >"$d/complex_key.yaml"
  : >"$d/empty.yaml"
}

build_master_run() {  # the 1-rank run: ckpt-1 and ckpt-2
  [[ -d "$WORK/master_run" ]] && return 0
  # shellcheck disable=SC2086
  "$DDPM" train ${TINY//\{RUN\}/$WORK/master_run} </dev/null >"$WORK/master_run.log" 2>&1 ||
    { echo "FAIL: cannot build the 1-rank fixture run:"; tail -n 5 "$WORK/master_run.log"; exit 1; }
}

build_master_run2() {  # the 2-rank run: ckpt-1 and ckpt-2 written by 2 ranks
  [[ -d "$WORK/master_run2" ]] && return 0
  # shellcheck disable=SC2086
  $MPIRUN -np 2 "$DDPM" train ${TINY//\{RUN\}/$WORK/master_run2} </dev/null >"$WORK/master_run2.log" 2>&1 ||
    { echo "FAIL: cannot build the 2-rank fixture run:"; tail -n 5 "$WORK/master_run2.log"; exit 1; }
}

# prepare SETUP: builds the fixture once (sets FX) and fills $RUN for run-directory setups; false if unknown.
prepare() {
  local setup="$1"
  FX="$WORK/fx/$setup"
  case "$setup" in
    none | idx_data) FX="$IDX"; return 0 ;;
    missing_data_dir) return 0 ;;  # {FX} does not exist
    run_dir_with_ckpt) build_master_run; cp -r "$WORK/master_run" "$RUN"; return 0 ;;
    corrupt_newest_ckpt) build_master_run; cp -r "$WORK/master_run" "$RUN"; corrupt "$RUN/ckpt-000000002.ddpm"; return 0 ;;
    all_ckpts_corrupt)
      build_master_run; cp -r "$WORK/master_run" "$RUN"
      corrupt "$RUN/ckpt-000000001.ddpm"; corrupt "$RUN/ckpt-000000002.ddpm"; return 0 ;;
    two_rank_run) build_master_run2; cp -r "$WORK/master_run2" "$RUN"; return 0 ;;
    run_dir_is_file) echo "not a directory" >"$RUN"; return 0 ;;
  esac
  [[ -e "$FX.done" ]] && return 0
  rm -rf "$FX"
  case "$setup" in
    config_files) write_config_files "$FX" ;;
    a_file) echo "a plain file" >"$FX" ;;
    empty_data_dir | image_folder_empty) mkdir -p "$FX" ;;
    truncated_idx_header) cp -r "$IDX" "$FX"; head -c 10 "$IDX/train-images-idx3-ubyte" >"$FX/train-images-idx3-ubyte" ;;
    truncated_idx) cp -r "$IDX" "$FX"; head -c 1000 "$IDX/train-images-idx3-ubyte" >"$FX/train-images-idx3-ubyte" ;;
    wrong_idx_magic)  # the labels' magic 0x801 in the images file
      cp -r "$IDX" "$FX"; printf '\x00\x00\x08\x01' | dd of="$FX/train-images-idx3-ubyte" conv=notrunc 2>/dev/null ;;
    idx_count_mismatch)  # 64 images, 60 labels
      cp -r "$IDX" "$FX"
      { printf '\x00\x00\x08\x01\x00\x00\x00\x3c'; tail -c +9 "$IDX/train-labels-idx1-ubyte" | head -c 60; } >"$FX/train-labels-idx1-ubyte" ;;
    idx_trailing_bytes) cp -r "$IDX" "$FX"; printf 'xx' >>"$FX/train-images-idx3-ubyte" ;;
    truncated_gzip)
      cp -r "$IDX" "$FX"; rm "$FX/train-images-idx3-ubyte"
      gzip -c "$IDX/train-images-idx3-ubyte" | head -c 2000 >"$FX/train-images-idx3-ubyte.gz" ;;
    bad_gzip)
      cp -r "$IDX" "$FX"; rm "$FX/train-images-idx3-ubyte"
      gzip -c "$IDX/train-images-idx3-ubyte" >"$FX/train-images-idx3-ubyte.gz"; corrupt "$FX/train-images-idx3-ubyte.gz" ;;
    idx_entry_is_dir) cp -r "$IDX" "$FX"; rm "$FX/train-images-idx3-ubyte"; mkdir "$FX/train-images-idx3-ubyte" ;;
    idx_train_only) cp -r "$IDX" "$FX"; rm "$FX"/t10k-* ;;
    cifar_data | cifar_wrong_size | cifar_missing_batch | cifar_bad_label | cifar_empty_batch)
      mkdir -p "$FX"  # 2 all-zero records (label 0) per train batch, 1 in the test batch
      for i in 1 2 3 4 5; do head -c $((3073 * 2)) /dev/zero >"$FX/data_batch_$i.bin"; done
      head -c 3073 /dev/zero >"$FX/test_batch.bin"
      case "$setup" in
        cifar_wrong_size) head -c 5000 /dev/zero >"$FX/data_batch_3.bin" ;;
        cifar_missing_batch) rm "$FX/data_batch_5.bin" ;;
        cifar_bad_label) printf '\x0c' | dd of="$FX/data_batch_2.bin" bs=1 seek=3073 conv=notrunc 2>/dev/null ;;
        cifar_empty_batch) : >"$FX/data_batch_1.bin" ;;
      esac ;;
    image_folder_no_images) mkdir -p "$FX"; echo "notes" >"$FX/readme.txt"; mkdir "$FX/x.png" ;;
    image_folder_undecodable) write_pngs "$FX"; rm "$FX/truncated.png"; echo "this is not a png" >"$FX/c.png" ;;
    image_folder_empty_png) write_pngs "$FX"; rm "$FX/truncated.png"; : >"$FX/c.png" ;;
    image_folder_truncated_png) write_pngs "$FX" ;;
    npz_images_and_statistics)  # an .npz of images (arr_0) that also holds statistics (mu, sigma)
      python3 - "$FX" <<'PY'
import os, struct, sys, zipfile
def npy(descr, shape, data):
    header = "{'descr': '%s', 'fortran_order': False, 'shape': %r, }" % (descr, tuple(shape))
    header += " " * (63 - (10 + len(header)) % 64) + "\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode() + data
os.makedirs(sys.argv[1])
with zipfile.ZipFile(os.path.join(sys.argv[1], "both.npz"), "w") as z:
    z.writestr("arr_0.npy", npy("|u1", (2, 4, 4, 3), bytes(96)))
    z.writestr("mu.npy", npy("<f8", (2,), struct.pack("<2d", 0, 0)))
    z.writestr("sigma.npy", npy("<f8", (2, 2), struct.pack("<4d", 1, 0, 0, 1)))
PY
      ;;
    ckpt_files)  # damaged copies of the 1-rank run's ckpt-2 (11 MB)
      build_master_run; mkdir -p "$FX" "$FX/dir.ddpm"
      local good="$WORK/master_run/ckpt-000000002.ddpm"
      cp "$good" "$FX/truncated.ddpm"; truncate -s 5000000 "$FX/truncated.ddpm"
      head -c 20 "$good" >"$FX/short.ddpm"
      cp "$good" "$FX/trailing.ddpm"; printf 'XX' >>"$FX/trailing.ddpm"
      cp "$good" "$FX/version.ddpm"; printf '\x63' | dd of="$FX/version.ddpm" bs=1 seek=8 conv=notrunc 2>/dev/null
      cp "$good" "$FX/corrupt.ddpm"; corrupt "$FX/corrupt.ddpm"
      cp "$good" "$FX/ckpt-000000005.ddpm"  # holds step 2
      : >"$FX/empty.ddpm"
      cp "$WORK/master_run/config.yaml" "$FX/config.yaml" ;;
    diffusers_dirs)  # the 1-rank run's ckpt-2 exported (good), and damaged copies of it, one per case
      build_master_run; mkdir -p "$FX"
      # shellcheck disable=SC2086
      "$DDPM" export ${TINY//\{RUN\}/$WORK/master_run} --output "$FX/good" >"$FX/export.log" 2>&1 ||
        { echo "FAIL: cannot export the diffusers fixture:"; tail -n 3 "$FX/export.log"; exit 1; }
      python3 - "$FX" <<'PY'
import json, os, shutil, struct, sys
fx = sys.argv[1]
WEIGHTS = "unet/diffusion_pytorch_model.safetensors"
def read(path):
    b = open(path, "rb").read()
    n = struct.unpack("<Q", b[:8])[0]
    return json.loads(b[8:8 + n]), b[8 + n:]
def write(path, header, data):  # a valid file of these entries: offsets recomputed, data packed in order
    out, entries, offset = b"", {}, 0
    for name, (entry, raw) in header.items():
        entries[name] = dict(entry, data_offsets=[offset, offset + len(raw)])
        out, offset = out + raw, offset + len(raw)
    h = json.dumps(entries).encode()
    h += b" " * (-len(h) % 8)
    open(path, "wb").write(struct.pack("<Q", len(h)) + h + out)
def copy(name):
    d = os.path.join(fx, name)
    shutil.copytree(os.path.join(fx, "good"), d)
    return d, os.path.join(d, WEIGHTS)
header, data = read(os.path.join(fx, "good", WEIGHTS))
tensors = {k: (v, data[v["data_offsets"][0]:v["data_offsets"][1]]) for k, v in header.items() if k != "__metadata__"}
d, w = copy("truncated"); open(w, "r+b").truncate(os.path.getsize(w) // 2)
d, w = copy("huge_header"); b = bytearray(open(w, "rb").read()); b[:8] = struct.pack("<Q", 1 << 40); open(w, "wb").write(b)
d, w = copy("lying_offsets")  # conv_in.weight's range made to overlap the next tensor's: same bytes, a lie in the header
b = open(w, "rb").read(); n = struct.unpack("<Q", b[:8])[0]; h = json.loads(b[8:8 + n])
begin, end = h["conv_in.weight"]["data_offsets"]; h["conv_in.weight"]["data_offsets"] = [begin, end + 4]
t = json.dumps(h).encode(); t += b" " * (-len(t) % 8); open(w, "wb").write(struct.pack("<Q", len(t)) + t + b[8 + n:])
d, w = copy("missing_tensor"); write(w, {k: v for k, v in tensors.items() if k != "mid_block.attentions.0.to_v.bias"}, b"")
d, w = copy("wrong_shape"); changed = dict(tensors); entry, raw = changed["conv_in.weight"]
changed["conv_in.weight"] = (dict(entry, shape=[16, 2, 3, 3]), raw); write(w, changed, b"")
d, w = copy("extra_tensor"); changed = dict(tensors); changed["class_embedding.weight"] = ({"dtype": "F32", "shape": [1]}, b"\0" * 4)
write(w, changed, b"")
d, w = copy("int_dtype"); changed = dict(tensors); entry, raw = changed["conv_out.bias"]
changed["conv_out.bias"] = (dict(entry, dtype="I32"), raw); write(w, changed, b"")
d, w = copy("nan_weight"); changed = dict(tensors); entry, raw = changed["time_embedding.linear_1.weight"]
changed["time_embedding.linear_1.weight"] = (entry, struct.pack("<I", 0x7FC00000) + raw[4:]); write(w, changed, b"")
d, w = copy("other_architecture"); c = json.load(open(os.path.join(d, "unet/config.json")))
c["_class_name"] = "UNet2DConditionModel"; json.dump(c, open(os.path.join(d, "unet/config.json"), "w"))
d, w = copy("bin_only"); os.remove(w); open(os.path.join(d, "unet/diffusion_pytorch_model.bin"), "wb").write(b"PK")
d, w = copy("bad_config_json"); open(os.path.join(d, "unet/config.json"), "w").write('{"in_channels": 1,')
PY
      ;;
    *) return 1 ;;
  esac
  touch "$FX.done"
}

expand() {  # expand TEXT: the table's placeholders for this row
  local s="$1"
  s="${s//\{MPIRUN\}/$MPIRUN}"; s="${s//\{DDPM\}/$DDPM}"; s="${s//\{SRC\}/$SRC}"; s="${s//\{RUN\}/$RUN}"
  s="${s//\{FX\}/$FX}"; s="${s//\{IDX\}/$IDX}"; s="${s//\{OUT\}/$OUT}"; s="${s//\{WORK\}/$WORK}"
  printf '%s' "$s"
}

# ---------------------------------------------------------------------------------------------------------------
write_idx_data "$IDX" || harness_error "cannot build the IDX fixture from /usr/share/datasets/fashion-mnist"
skipped=0
line_number=0
start=$SECONDS
while IFS= read -r line <&3 || [[ -n "$line" ]]; do  # fd 3: mpirun and ddpm must not read the table
  line_number=$((line_number + 1))
  [[ -z "${line//[[:space:]]/}" || "$line" == \#* ]] && continue
  IFS=$'\t' read -r name status ranks setup command code fragment extra <<<"$line"
  [[ "$name" == "name" ]] && continue  # the header
  if [[ -z "$fragment" || -n "${extra:-}" || ! "$code" =~ ^[0-9]+$ || ! "$ranks" =~ ^[12]$ ]]; then
    harness_error "$TABLE:$line_number: malformed row (7 tab-separated fields: name status ranks setup command exit fragment)"
  fi
  [[ -n "${BAD_INPUT_FILTER:-}" && ! "$name" =~ $BAD_INPUT_FILTER ]] && continue
  if [[ "$status" == "bug" && "${BAD_INPUT_RUN_BUGS:-0}" != "1" ]]; then
    echo "skip  $name (status bug: should exit $code with '$fragment')"
    skipped=$((skipped + 1))
    continue
  fi
  if [[ "$status" != "ok" && "$status" != "bug" ]]; then
    harness_error "$TABLE:$line_number: status must be ok or bug, got '$status'"
  fi
  RUN="$WORK/runs/$name"
  OUT="$WORK/out/$name"
  rm -rf "$RUN"
  if ! prepare "$setup"; then
    harness_error "$TABLE:$line_number: $name: unknown setup '$setup'"
  fi
  [[ "$ranks" == "2" && "$command" != "{MPIRUN}"* ]] && command="{MPIRUN} -np 2 $command"
  command="${command//\{TINY\}/$TINY}"
  command="$(expand "$command")"
  fragment="$(expand "$fragment")"

  # Nothing lost: a train row in a run directory must leave every checkpoint that verified before as it was
  # (a corrupt one may be replaced), and a refused row config.yaml too.
  hashes=""
  if [[ " $command " == *" train "* && -d "$RUN" ]]; then
    for ckpt in "$RUN"/ckpt-*.ddpm; do
      [[ -f "$ckpt" ]] && verify_ckpt "$ckpt" && hashes+="$(cd "$RUN" && sha256sum "${ckpt##*/}")"$'\n'
    done
    [[ "$code" -ne 0 && -f "$RUN/config.yaml" ]] && hashes+="$(cd "$RUN" && sha256sum config.yaml)"$'\n'
  fi

  output="$(cd "$WORK" && timeout 60 bash -o noglob -c "$command" 2>&1 </dev/null)"
  actual=$?
  problems=""
  [[ "$actual" -ne "$code" ]] && problems+=" exit $actual, expected $code;"
  rest="$fragment"
  while :; do  # fixed strings joined by {AND}: each must appear
    piece="${rest%%\{AND\}*}"
    grep -qF -- "$piece" <<<"$output" || problems+=" no '$piece' in the output;"
    [[ "$rest" == *"{AND}"* ]] || break
    rest="${rest#*\{AND\}}"
  done
  # A refused export or import leaves no output behind, not even its hidden partial directory.
  if [[ "$code" -ne 0 && ( " $command " == *" export "* || " $command " == *" import "* ) ]]; then
    [[ -e "$OUT" ]] && problems+=" $OUT was left behind;"
    compgen -G "$WORK/out/.*partial*" >/dev/null && problems+=" a partial output was left in $WORK/out;"
  fi
  if [[ -n "$hashes" ]] && ! (cd "$RUN" && sha256sum --quiet -c - <<<"$hashes" >/dev/null 2>&1); then
    problems+=" the run directory's files changed (something was lost);"
  fi
  # A run that went on must leave a newest checkpoint that verifies (never a half-written one).
  if [[ " $command " == *" train "* && "$actual" -eq 0 ]] && compgen -G "$RUN/ckpt-*.ddpm" >/dev/null; then
    newest="$(newest_ckpt "$RUN")"
    verify_ckpt "$newest" || problems+=" the newest checkpoint $(basename "$newest") does not verify ($VERIFY_OUT);"
  fi
  if [[ "$status" == "bug" ]]; then  # BAD_INPUT_RUN_BUGS=1: report, never fail
    if [[ -z "$problems" ]]; then echo "FIXED $name (exit $actual): set its status to ok"; else echo "bug   $name (exit $actual):$problems"; fi
    tail -n 2 <<<"$output" | sed 's/^/      | /'
    skipped=$((skipped + 1))
  elif [[ -z "$problems" ]]; then
    echo "ok    $name (exit $actual)"
    passes=$((passes + 1))
  else
    echo "FAIL  $name (exit $actual):$problems"
    echo "      \$ $command"
    tail -n 6 <<<"$output" | sed 's/^/      | /'
    failures=$((failures + 1))
  fi
  rm -rf "$RUN"
done 3<"$TABLE"

rows="$(awk -F'\t' '!/^#/ && NF > 0 && $1 != "name"' "$TABLE" | wc -l)"
if [[ -z "${BAD_INPUT_FILTER:-}" && $((passes + failures + skipped)) -ne $rows ]]; then
  harness_error "$rows rows in the table, $((passes + failures + skipped)) handled"
fi
echo "$passes passed, $failures failed, $skipped skipped (known bugs) of $rows rows in $((SECONDS - start)) s"
exit_status
