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
    """Two panels over a log t axis (the early steps hold most of the bound): each run's L_t on a log scale, and
    each run's L_t divided by the first run's."""
    width, left, right, top, panel_h, gap, bottom = 900, 80, 250, 40, 330, 70, 60
    height = top + 2 * panel_h + gap + bottom
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    series = [(name, np.asarray(bound["per_t_bpd"], dtype=np.float64)) for name, (bound, _, _) in runs]
    T = len(series[0][1])
    plot_w = width - left - right
    x_of = lambda t: left + plot_w * math.log10(t + 1) / math.log10(T)  # t: index, step t + 1
    values = np.concatenate([s for _, s in series])
    lo = math.floor(math.log10(max(values[values > 0].min(), 1e-7)))
    hi = math.ceil(math.log10(values.max()))
    ratios = [s / np.maximum(series[0][1], 1e-30) for _, s in series]
    r_lo, r_hi = 0.5, 1.5

    def frame(y0, title, ticks):
        draw.rectangle([left, y0, left + plot_w, y0 + panel_h], outline="black")
        draw.text((left, y0 - 18), title, fill="black")
        for value, y in ticks:
            draw.line([left, y, left + plot_w, y], fill=(220, 220, 220))
            draw.text((left - 60, y - 6), value, fill="black")
        for step in [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000]:
            if step > T:
                break
            x = x_of(step - 1)
            draw.line([x, y0 + panel_h, x, y0 + panel_h + 5], fill="black")
            draw.text((x - 8, y0 + panel_h + 8), str(step), fill="black")

    y_top = lambda v: top + panel_h * (hi - math.log10(max(v, 10.0 ** lo))) / (hi - lo)
    frame(top, "bound term L per diffusion step t, bits/dim (ddpm eval; log scales)",
          [(f"1e{e:+d}", y_top(10.0 ** e)) for e in range(lo, hi + 1)])
    y1 = top + panel_h + gap
    y_ratio = lambda r: y1 + panel_h * (r_hi - min(max(r, r_lo), r_hi)) / (r_hi - r_lo)
    frame(y1, f"L_t / L_t of {series[0][0]}", [(f"{r:.2f}", y_ratio(r)) for r in np.arange(r_lo, r_hi + 1e-9, 0.25)])
    draw.text((left + plot_w / 2 - 130, height - 25), "diffusion step t (1 = the decoder L_0), log scale", fill="black")
    for k, (name, s) in enumerate(series):
        color = COLORS[k % len(COLORS)]
        draw.line([(x_of(t), y_top(v)) for t, v in enumerate(s)], fill=color, width=2)
        draw.line([(x_of(t), y_ratio(r)) for t, r in enumerate(ratios[k])], fill=color, width=1)
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
