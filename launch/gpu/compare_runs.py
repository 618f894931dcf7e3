#!/usr/bin/env python3
"""The comparisons of launch/gpu/gpu_check.sh, each printing its figures and, last, one JSON line; exit 1 when the
comparison fails. Plain Python: it runs under whatever python3 the GPU machine has.

    compare_runs.py learns RUN [RATIO]             the run's last logged loss is at most RATIO (0.5) of its first
    compare_runs.py curve RUN REFERENCE TOLERANCE [FLOOR_RUN]
                                                   the largest relative difference of the two loss curves (every
                                                   logged step) is at most TOLERANCE, or twice the distance of
                                                   FLOOR_RUN's curve from REFERENCE's (two runs alike: the noise floor)
    compare_runs.py images A.npz B.npz [KEY=NUMBER...]
                                                   two sample files (arr_0, uint8) differ by at most one level, in at
                                                   most 1% of the pixels; KEY=NUMBER pairs join the report

GPU kernels are not bit-reproducible from run to run (atomics, algorithm choices), so runs are compared by their
loss curves unless train.deterministic is on (gpu_check.sh compares those bit by bit, with compare_checkpoints).
"""
import json
import os
import struct
import sys
import zipfile


def curve(run):
    with open(os.path.join(run, "train_log.jsonl")) as f:
        return [(r["step"], r["loss"]) for r in map(json.loads, f)]


def distance(a, b):
    if len(a) != len(b) or not a:
        raise SystemExit(f"compare_runs: the curves have {len(a)} and {len(b)} logged steps")
    return max(abs(x[1] - y[1]) / y[1] for x, y in zip(a, b))


def done(report):
    print(json.dumps(report))
    sys.exit(0 if report["ok"] else 1)


def learns(run, ratio=0.5):
    c = curve(run)
    ok = c[-1][1] <= ratio * c[0][1]
    print(f"loss {c[0][1]:.4f} at step {c[0][0]} -> {c[-1][1]:.4f} at step {c[-1][0]}: "
          f"{'learns' if ok else f'FAIL: not below {ratio:g} of the first'}")
    done({"ok": ok, "first_loss": c[0][1], "last_loss": c[-1][1], "steps": c[-1][0], "ratio": ratio})


def compare_curves(run, reference, tolerance, floor_run=None):
    d = distance(curve(run), curve(reference))
    report = {"distance": d, "tolerance": tolerance}
    if floor_run:
        report["noise_floor"] = distance(curve(floor_run), curve(reference))
        tolerance = max(tolerance, 2 * report["noise_floor"])
        report["tolerance"] = tolerance
    report["ok"] = d <= tolerance
    print(f"{os.path.basename(run)}: curve differs from {os.path.basename(reference)} by at most {d:.2%} "
          f"(tolerance {tolerance:.1%}{', noise floor %.2f%%' % (100 * report['noise_floor']) if floor_run else ''})"
          f": {'ok' if report['ok'] else 'FAIL'}")
    done(report)


def pixels(path):
    with zipfile.ZipFile(path) as z:
        raw = z.read("arr_0.npy")
    version = raw[6]
    size = struct.unpack("<H", raw[8:10])[0] if version == 1 else struct.unpack("<I", raw[8:12])[0]
    return raw[(10 if version == 1 else 12) + size:]


def compare_images(a_path, b_path, extra):
    a, b = pixels(a_path), pixels(b_path)
    if len(a) != len(b):
        print(f"FAIL: {len(a)} against {len(b)} bytes")
        done({"ok": False, "bytes": [len(a), len(b)], **extra})
    differing = sum(x != y for x, y in zip(a, b))
    largest = max((abs(x - y) for x, y in zip(a, b)), default=0)
    ok = largest <= 1 and differing <= 0.01 * len(a)
    print(f"{differing} of {len(a)} pixels differ, by at most {largest}: {'ok' if ok else 'FAIL'}")
    done({"ok": ok, "pixels": len(a), "differing": differing, "largest": largest, **extra})


def main(argv):
    if len(argv) in (2, 3) and argv[0] == "learns":
        learns(argv[1], float(argv[2]) if len(argv) == 3 else 0.5)
    elif len(argv) in (4, 5) and argv[0] == "curve":
        compare_curves(argv[1], argv[2], float(argv[3]), argv[4] if len(argv) == 5 else None)
    elif len(argv) >= 3 and argv[0] == "images":
        extra = {}
        for pair in argv[3:]:
            key, _, value = pair.partition("=")
            try:
                extra[key] = float(value)
            except ValueError:
                extra[key] = None  # a figure the run did not print: the comparison stands without it
        compare_images(argv[1], argv[2], extra)
    else:
        print(__doc__, file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main(sys.argv[1:])
