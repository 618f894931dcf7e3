#!/usr/bin/env python3
"""stand_in_images.py DIR [COUNT]: COUNT (default 512) random 32x32 RGB PNGs in DIR, for timing the CIFAR-10 config
where CIFAR-10 is absent (nothing is downloaded at run time): a step's cost does not depend on the pixels. Seeded:
the same images every time, so a folder that holds COUNT of them already is left as it is. Plain Python (zlib), no
numpy or Pillow."""
import os
import random
import struct
import sys
import zlib


def chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def main(out, count):
    os.makedirs(out, exist_ok=True)
    if sum(name.endswith(".png") for name in os.listdir(out)) == count:
        return
    rng = random.Random(0)
    for i in range(count):
        rows = b"".join(b"\0" + bytes(rng.randrange(256) for _ in range(32 * 3)) for _ in range(32))
        png = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 32, 32, 8, 2, 0, 0, 0))
               + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))
        with open(os.path.join(out, f"{i:04d}.png"), "wb") as f:
            f.write(png)


if __name__ == "__main__":
    if len(sys.argv) not in (2, 3):
        sys.exit(__doc__)
    main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) == 3 else 512)
