#!/usr/bin/env python3
"""Writes the seed corpus of the fuzz targets under tests/fuzz/corpus/<target>/ from real files.

  python3 tests/fuzz/make_seeds.py [--checkpoint PATH]

- fuzz_config: configs/*.yaml, and smoke.yaml with --set overrides (NUL-separated).
- fuzz_idx: the first images of Fashion-MNIST's t10k files (/usr/share/datasets/fashion-mnist), raw and gzip.
- fuzz_cifar10: small CIFAR-10 batch files in the real format (one and two files).
- fuzz_image: PNGs written here (gray, gray+alpha, RGB, RGBA, palette, 16-bit, interlaced), JPEGs and a BMP written
  by stb_image_write (compiled on the fly with c++), each after the target's parameter byte.
- fuzz_checkpoint_header: from a real checkpoint (--checkpoint; `ddpm train` with configs/smoke.yaml and
  train.steps=1 writes one): its header and metadata with a short prefix of the tensor archive, lengths and
  CRC made consistent, and the file's first 4 KiB as they are (a truncated file). Kept as they are without
  --checkpoint.
- fuzz_npz: archives numpy writes (savez, savez_compressed, a write-only stream with data descriptors, every ZIP64
  record with zipfile's ZIP64 limit lowered) after the flag byte 0, and single .npy entries (format 1.0, 2.0, 3.0)
  after flag 1 (stored) or 2 (deflated). numpy comes from setup.sh's virtual environment (--numpy-python, default
  $DDPM_TORCH_ENV/bin/python); without it these seeds are kept as they are.
- fuzz_safetensors: small files laid out as safetensors' reference writer lays them out (compact JSON, "__metadata__"
  first, the header padded with spaces to a multiple of 8), written here with struct and json: F32, BF16 and F16
  tensors with and without "__metadata__", a 0-dim and a zero-size tensor among other dtypes, an empty file, and
  one by another writer (header keys out of order, data not in name order, no padding).
Only these files are (re)written: the other files of the corpus folders, the inputs of bugs the fuzzers found
(named regression-*), are left as they are.
"""
import argparse
import gzip
import json
import os
import struct
import subprocess
import sys
import tempfile
import zlib

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CORPUS = os.path.join(ROOT, "tests", "fuzz", "corpus")
FASHION = "/usr/share/datasets/fashion-mnist"


def write(target, name, data):
    folder = os.path.join(CORPUS, target)
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, name), "wb") as f:
        f.write(data)


def config_seeds():
    for name in sorted(os.listdir(os.path.join(ROOT, "configs"))):
        if name.endswith(".yaml"):
            with open(os.path.join(ROOT, "configs", name), "rb") as f:
                write("fuzz_config", name, f.read())
    with open(os.path.join(ROOT, "configs", "smoke.yaml"), "rb") as f:
        smoke = f.read()
    write("fuzz_config", "smoke_with_overrides.yaml",
          smoke + b"\0train.lr=0.01\0model.channel_mult=[1, 2, 2]\0run.dir=/tmp/x")
    write("fuzz_config", "minimal.yaml", b"run:\n  dir: runs/x\ntrain: {steps: 10, lr: 1e-4}\n")


def idx_seeds():
    def first(path, header_words, count, item_bytes):
        with gzip.open(path, "rb") as f:
            data = f.read(4 * header_words + count * item_bytes)
        words = list(struct.unpack(">%dI" % header_words, data[: 4 * header_words]))
        words[1] = count  # the count of the slice, so that the files are consistent
        return struct.pack(">%dI" % header_words, *words) + data[4 * header_words:]

    def pair(images, labels):
        return struct.pack("<H", len(images)) + images + labels

    for count in (1, 4):
        images = first(os.path.join(FASHION, "t10k-images-idx3-ubyte.gz"), 4, count, 28 * 28)
        labels = first(os.path.join(FASHION, "t10k-labels-idx1-ubyte.gz"), 2, count, 1)
        write("fuzz_idx", "fashion_t10k_%d.idx" % count, pair(images, labels))
        if count == 1:
            write("fuzz_idx", "fashion_t10k_1.idx.gz",
                  pair(gzip.compress(images, mtime=0), gzip.compress(labels, mtime=0)))
    tiny = struct.pack(">IIII", 0x803, 2, 3, 2) + bytes(range(12))
    write("fuzz_idx", "tiny_2x3x2.idx", pair(tiny, struct.pack(">II", 0x801, 2) + b"\x07\x01"))


def cifar_seeds():
    def record(label, seed):
        return bytes([label]) + bytes((seed * 7 + i * 13) & 0xff for i in range(3072))

    write("fuzz_cifar10", "one_file_2_records.bin", b"\x00" + record(3, 1) + record(9, 2))
    first = record(0, 3)
    write("fuzz_cifar10", "two_files.bin", b"\x80" + struct.pack("<H", len(first)) + first + record(5, 4))
    write("fuzz_cifar10", "bad_label.bin", b"\x00" + record(10, 5))


def png(width, height, color_type, bit_depth, rows, palette=None, interlace=0):
    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xffffffff)

    raw = b"".join(b"\x00" + row for row in rows)
    out = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, interlace))
    if palette is not None:
        out += chunk(b"PLTE", palette)
    return out + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b"")


def adam7_rows(width, height, channels, pixel):
    """The raw rows of an Adam7-interlaced 8-bit image, pass by pass."""
    passes = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)]
    rows = []
    for x0, y0, dx, dy in passes:
        xs = list(range(x0, width, dx))
        if not xs:
            continue
        for y in range(y0, height, dy):
            rows.append(b"".join(pixel(x, y) for x in xs))
    return rows


def image_seeds(work):
    # Parameter byte: bits 0-5 image_size - 1, bit 7 three channels.
    gray = png(8, 6, 0, 8, [bytes((x * 30 + y * 7) & 0xff for x in range(8)) for y in range(6)])
    write("fuzz_image", "gray_8x6.png", bytes([0x03]) + gray)
    rgb = png(5, 7, 2, 8, [bytes(v for x in range(5) for v in (x * 50, y * 30, 128)) for y in range(7)])
    write("fuzz_image", "rgb_5x7.png", bytes([0x80 | 0x02]) + rgb)
    rgba = png(4, 4, 6, 8, [bytes(v for x in range(4) for v in (x * 60, y * 60, 9, 200)) for y in range(4)])
    write("fuzz_image", "rgba_4x4.png", bytes([0x80 | 0x01]) + rgba)
    gray_alpha = png(3, 5, 4, 8, [bytes(v for x in range(3) for v in (x * 80, 255)) for y in range(5)])
    write("fuzz_image", "gray_alpha_3x5.png", bytes([0x00]) + gray_alpha)
    palette = png(6, 2, 3, 8, [bytes((x + y) % 3 for x in range(6)) for y in range(2)], palette=b"\xff\x00\x00\x00\xff\x00\x00\x00\xff")
    write("fuzz_image", "palette_6x2.png", bytes([0x80 | 0x01]) + palette)
    deep = png(3, 3, 2, 16, [b"".join(struct.pack(">HHH", x * 20000, y * 20000, 65535) for x in range(3)) for y in range(3)])
    write("fuzz_image", "rgb16_3x3.png", bytes([0x80 | 0x00]) + deep)
    laced = png(9, 9, 2, 8, adam7_rows(9, 9, 3, lambda x, y: bytes((x * 28, y * 28, (x ^ y) * 16))), interlace=1)
    write("fuzz_image", "rgb_interlaced_9x9.png", bytes([0x80 | 0x03]) + laced)
    wide = png(40, 3, 0, 8, [bytes((x * 6) & 0xff for x in range(40)) for y in range(3)])
    write("fuzz_image", "gray_40x3.png", bytes([0x07]) + wide)

    # JPEG and BMP through stb_image_write, the writer of the library the loader reads with.
    source = os.path.join(work, "write.cpp")
    with open(source, "w") as f:
        f.write(r'''
#define STB_IMAGE_WRITE_IMPLEMENTATION
#include <stb/stb_image_write.h>
#include <string>
#include <vector>
int main(int argc, char** argv) {
  const char* dir = argv[1];
  std::vector<unsigned char> rgb, gray;
  for (int y = 0; y < 12; ++y)
    for (int x = 0; x < 10; ++x) {
      rgb.push_back(x * 25); rgb.push_back(y * 20); rgb.push_back((x * y) & 255);
      gray.push_back((x * 20 + y * 3) & 255);
    }
  std::string d(dir);
  return !(stbi_write_jpg((d + "/rgb.jpg").c_str(), 10, 12, 3, rgb.data(), 90) &&
           stbi_write_jpg((d + "/gray.jpg").c_str(), 10, 12, 1, gray.data(), 50) &&
           stbi_write_bmp((d + "/rgb.bmp").c_str(), 10, 12, 3, rgb.data()));
}
''')
    exe = os.path.join(work, "write")
    subprocess.run(["c++", "-O1", "-w", "-o", exe, source], check=True)
    subprocess.run([exe, work], check=True)
    for name, param in (("rgb.jpg", 0x80 | 0x04), ("gray.jpg", 0x05), ("rgb.bmp", 0x80 | 0x04)):
        with open(os.path.join(work, name), "rb") as f:
            write("fuzz_image", "stb_" + name.replace(".", "_") + ".img", bytes([param]) + f.read())


NPZ_SEEDS = r"""
import io, os, sys, zipfile
import numpy as np

out = sys.argv[1]
u8 = ((np.arange(96) * 7 + 3) % 256).astype(np.uint8).reshape(2, 4, 4, 3)
mu = np.arange(4) / 3.0 - 0.5
sigma = (np.arange(16) % 11).reshape(4, 4) / 7.0

def save(name, flag, writer):
    buffer = io.BytesIO()
    writer(buffer)
    with open(os.path.join(out, name), "wb") as f:
        f.write(bytes([flag]) + buffer.getvalue())

class Sink:  # write-only: zipfile writes data descriptors
    def __init__(self, f):
        self.f = f
    def read(self, n=-1):
        raise io.UnsupportedOperation("write-only")
    def write(self, b):
        return self.f.write(b)
    def flush(self):
        pass

def zip64(f):
    limit = zipfile.ZIP64_LIMIT
    zipfile.ZIP64_LIMIT = 0
    try:
        np.savez(f, arr_0=u8, mu=mu)
    finally:
        zipfile.ZIP64_LIMIT = limit

save("savez_samples.npz", 0, lambda f: np.savez(f, u8))
save("savez_fid_stats.npz", 0, lambda f: np.savez(f, mu=mu, sigma=sigma))
save("savez_compressed.npz", 0, lambda f: np.savez_compressed(f, u8, mu=mu))
save("savez_stream_descriptors.npz", 0, lambda f: np.savez_compressed(Sink(f), u8))
save("savez_zip64_records.npz", 0, zip64)
save("npy_v1_u8.npy", 1, lambda f: np.lib.format.write_array(f, u8[0, 0], version=(1, 0)))
save("npy_v2_f4.npy", 1, lambda f: np.lib.format.write_array(f, mu.astype(np.float32), version=(2, 0)))
save("npy_v3_f8_0d_deflated.npy", 2, lambda f: np.lib.format.write_array(f, np.float64(2.5), version=(3, 0)))
save("npy_empty_deflated.npy", 2, lambda f: np.save(f, np.zeros((0, 3), np.float32)))
save("npy_sigma_deflated.npy", 2, lambda f: np.save(f, sigma))
"""


def npz_seeds(python, work):
    if not os.access(python, os.X_OK):
        print("fuzz_npz: seeds kept as they are (no python with numpy at %s)" % python)
        return
    folder = os.path.join(work, "npz")
    os.makedirs(folder)
    subprocess.run([python, "-c", NPZ_SEEDS, folder], check=True)
    for name in sorted(os.listdir(folder)):
        with open(os.path.join(folder, name), "rb") as f:
            write("fuzz_npz", name, f.read())


def safetensors_file(tensors, metadata=None, pad=True):
    """A safetensors file of (name, dtype, shape, data) tensors, their data in that order."""
    header = {}
    if metadata is not None:
        header["__metadata__"] = metadata
    offset = 0
    for name, dtype, shape, data in tensors:
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + len(data)]}
        offset += len(data)
    text = json.dumps(header, separators=(",", ":")).encode()
    if pad:
        text += b" " * (-len(text) % 8)  # the reference pads so that the data starts at a multiple of 8
    return struct.pack("<Q", len(text)) + text + b"".join(data for _, _, _, data in tensors)


def safetensors_seeds():
    def f32(*values):
        return struct.pack("<%df" % len(values), *values)

    def bf16(*values):  # the upper half of each float32 (exact for these values)
        return b"".join(f32(v)[2:] for v in values)

    def f16(*values):
        return struct.pack("<%de" % len(values), *values)

    write("fuzz_safetensors", "f32_2x3.safetensors",
          safetensors_file([("weight", "F32", [2, 3], f32(1, -2, 0.5, 0, 3.25, -1e-3))]))
    write("fuzz_safetensors", "bf16_f16_metadata.safetensors",
          safetensors_file([("ema.bf16", "BF16", [4], bf16(1, -2, 0.5, 256)),
                            ("half", "F16", [2, 2], f16(1, -1, 0.25, 65504))], metadata={"format": "pt"}))
    write("fuzz_safetensors", "zero_size_0dim_mixed.safetensors",
          safetensors_file([("bias", "F32", [0, 3], b""),
                            ("flags", "BOOL", [2], b"\x01\x00"),
                            ("mu", "F64", [1], struct.pack("<d", 0.1)),
                            ("pixels", "U8", [3], b"\x00\x7f\xff"),
                            ("rows", "I32", [2], struct.pack("<2i", -1, 7)),
                            ("step", "I64", [], struct.pack("<q", 1500))],
                           metadata={"format": "pt", "step": "1500"}))
    write("fuzz_safetensors", "empty.safetensors", safetensors_file([]))
    # Another writer's layout: keys in no particular order, data not in name order, the header unpadded.
    text = (b'{"z":{"shape":[2],"dtype":"I16","data_offsets":[0,4]},"a":{"data_offsets":[4,8],'
            b'"dtype":"F32","shape":[]},"__metadata__":{"source":"other writer"}}')
    write("fuzz_safetensors", "unordered_unpadded.safetensors",
          struct.pack("<Q", len(text)) + text + struct.pack("<2h", -3, 4) + f32(2.5))


def checkpoint_seeds(path):
    with open(path, "rb") as f:
        data = f.read()
    assert data[:8] == b"DDPMCKPT", path
    metadata_length = struct.unpack("<I", data[12:16])[0]
    payload_at = 16 + metadata_length + 8
    payload = data[payload_at: payload_at + 2048]  # the start of the tensor archive (a zip)
    body = data[: 16 + metadata_length] + struct.pack("<Q", len(payload)) + payload
    write("fuzz_checkpoint_header", "smoke_step1_short_payload.ddpm", body + struct.pack("<I", zlib.crc32(body) & 0xffffffff))
    write("fuzz_checkpoint_header", "smoke_step1_first_4k.ddpm", data[:4096])
    small = b"DDPMCKPT" + struct.pack("<I", 1)
    meta = b'{"step":7,"user":null}'
    small += struct.pack("<I", len(meta)) + meta + struct.pack("<Q", 3) + b"abc"
    write("fuzz_checkpoint_header", "no_user_metadata.ddpm", small + struct.pack("<I", zlib.crc32(small) & 0xffffffff))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", help="a real checkpoint file to take the checkpoint seeds from")
    default_python = os.path.join(
        os.environ.get("DDPM_TORCH_ENV") or os.path.join(
            os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "ddpm",
            "torch-" + os.environ.get("DDPM_TORCH_VERSION", "2.11.0")), "bin", "python")
    parser.add_argument("--numpy-python", default=default_python, help="a python with numpy, for the npz seeds")
    args = parser.parse_args()
    config_seeds()
    idx_seeds()
    cifar_seeds()
    safetensors_seeds()
    with tempfile.TemporaryDirectory() as work:
        image_seeds(work)
        npz_seeds(args.numpy_python, work)
    if args.checkpoint:
        checkpoint_seeds(args.checkpoint)
    for target in sorted(os.listdir(CORPUS)):
        files = os.listdir(os.path.join(CORPUS, target))
        size = max(os.path.getsize(os.path.join(CORPUS, target, n)) for n in files)
        print("%-24s %3d seeds, largest %6d bytes" % (target, len(files), size))


if __name__ == "__main__":
    sys.exit(main())
