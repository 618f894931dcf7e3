#!/usr/bin/env python3
"""The table and the per-t plot of launch/bench/improved_ddpm.sh: reads each run's bound_<images>.json (ddpm eval),
wall_seconds and train_log.jsonl; prints a Markdown table and writes <dir>/per_t_bound.png (L_{t-1} against t, log
scale, one line per run; numpy and Pillow only).

usage: improved_ddpm_report.py DIR IMAGES RUN [RUN ...]
"""
import json
import math
import os
import sys

import numpy as np
from PIL import Image, ImageDraw

COLORS = [(31, 119, 180), (214, 39, 40), (44, 160, 44), (148, 103, 189)]


def load(run_dir, images):
    with open(os.path.join(run_dir, f"bound_{images}.json")) as f:
        bound = json.load(f)
    with open(os.path.join(run_dir, "wall_seconds")) as f:
        wall = float(f.read())
    with open(os.path.join(run_dir, "train_log.jsonl")) as f:
        log = [json.loads(line) for line in f]
    return bound, wall, log


def range_sums(per_t, edges):
    return [float(np.sum(per_t[lo:hi])) for lo, hi in zip(edges[:-1], edges[1:])]


def plot(path, runs):
    width, height, left, right, top, bottom = 900, 540, 80, 250, 40, 60
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    series = [(name, np.asarray(bound["per_t_bpd"], dtype=np.float64)) for name, (bound, _, _) in runs]
    T = len(series[0][1])
    values = np.concatenate([s for _, s in series])
    lo = math.floor(math.log10(max(values[values > 0].min(), 1e-6)))
    hi = math.ceil(math.log10(values.max()))
    plot_w, plot_h = width - left - right, height - top - bottom
    x_of = lambda t: left + plot_w * t / (T - 1)
    y_of = lambda v: top + plot_h * (hi - math.log10(max(v, 10.0 ** lo))) / (hi - lo)
    draw.rectangle([left, top, left + plot_w, top + plot_h], outline="black")
    for e in range(lo, hi + 1):
        y = y_of(10.0 ** e)
        draw.line([left, y, left + plot_w, y], fill=(220, 220, 220))
        draw.text((left - 60, y - 6), f"1e{e:+d}", fill="black")
    for t in range(0, T + 1, T // 5 if T >= 5 else 1):
        x = x_of(min(t, T - 1))
        draw.line([x, top + plot_h, x, top + plot_h + 5], fill="black")
        draw.text((x - 12, top + plot_h + 10), str(t + 1 if t < T else T), fill="black")
    draw.text((left + plot_w / 2 - 120, height - 25), "diffusion step t (index 0 = step 1, the decoder L_0)", fill="black")
    draw.text((left, 10), "bound term per t, bits/dim (ddpm eval, log scale)", fill="black")
    for k, (name, s) in enumerate(series):
        color = COLORS[k % len(COLORS)]
        draw.line([(x_of(t), y_of(v)) for t, v in enumerate(s)], fill=color, width=2)
        draw.line([left + plot_w + 15, top + 20 + 20 * k, left + plot_w + 35, top + 20 + 20 * k], fill=color, width=3)
        draw.text((left + plot_w + 40, top + 14 + 20 * k), name, fill="black")
    image.save(path)


def main():
    directory, images, names = sys.argv[1], sys.argv[2], sys.argv[3:]
    runs = [(name, load(os.path.join(directory, name), images)) for name in names]
    T = len(runs[0][1][0]["per_t_bpd"])
    edges = [0, 1, 10, 100, T] if T > 100 else [0, 1, T]
    labels = [f"t {a + 1}" if b - a == 1 else f"t {a + 1}-{b}" for a, b in zip(edges[:-1], edges[1:])]
    print(f"| run | steps | wall clock | total bits/dim | L_T | L_0 | " + " | ".join(f"Σ L, {l}" for l in labels[1:]) + " | ε-MSE |")
    print("|---" * (7 + len(labels) - 1) + "|")
    for name, (bound, wall, log) in runs:
        per_t = np.asarray(bound["per_t_bpd"], dtype=np.float64)
        sums = range_sums(per_t, edges)[1:]
        print(f"| {name} | {log[-1]['step']} | {wall / 60:.1f} min | {bound['total_bpd']:.4f} | {bound['prior_bpd']:.2e} | "
              f"{bound['decoder_bpd']:.4f} | " + " | ".join(f"{v:.4f}" for v in sums) + f" | {bound['eps_mse']:.4f} |")
    print(f"\n{runs[0][1][0]['images']} test images, all {T} terms each, x̂_0 clipped (ddpm eval).")
    path = os.path.join(directory, "per_t_bound.png")
    plot(path, runs)
    print(f"per-t plot: {path}")


if __name__ == "__main__":
    main()
