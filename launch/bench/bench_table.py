#!/usr/bin/env python3
"""The table of launch/bench/bench.sh, from its reports (bench_results.jsonl: one {"name", "report"} per line).

    python3 launch/bench/bench_table.py bench_results.jsonl

First the figures of every run (images/s, ms per step and its phases, memory, MFU, sampling), then the ratios
ours / peer. Then, for the runs that were profiled (`--profile-steps`), where a step's time goes: how much of
the timed step the device was busy (a GPU busy for much less waits on the host: launches, synchronization), the
busy time by kind of kernel (or operator, on a CPU), the rate of the matrix kernels, and the largest kernels.
"""
import json
import re
import sys

# Kinds of kernel (GPU: cuDNN, cuBLAS, CUTLASS, PyTorch's own, Triton's from torch.compile, NCCL) or operator
# (CPU: aten::), by name; the first pattern that matches wins.
KINDS = [
    ("comm", r"nccl|all_?reduce|c10d"),
    # On a CPU, torch.compile's generated C++ runs inside these records, not as aten:: operators.
    ("compiled", r"CompiledFxGraph|Torch-Compiled Region|TorchDynamo"),
    ("attention", r"flash|fmha|attention|sdpa|softmax"),
    ("norm", r"norm(?!al)|rowwisemoments|fusedparams|gammabeta"),
    ("optimizer", r"adam|multi_tensor|foreach|lerp"),
    ("copy/layout", r"memcpy|memset|nchwtonhwc|nhwctonchw|copy|fill|cat_|\bcat\b|contiguous|transpose|clone"),
    # Inductor names its fused pointwise kernels after every op fused in, convolution's epilogue included.
    ("elementwise", r"triton_(poi|red|per)_"),
    ("matmul/conv", r"gemm|conv|cutlass|xmma|cudnn|wgrad|dgrad|fprop|mkldnn|aten::(mm|addmm|bmm|matmul|linear)$|triton_tem"),
    ("elementwise", r"elementwise|vectorized|reduce|silu|add|mul|sub|div|where|sum|mean|mse|pow|exp|sqrt|randn|normal|uniform|index"),
]


def is_shipped(name):
    """The row of the config as shipped, eager: not its CUDA-graph, cuDNN-autotuning or all-reduce variants."""
    return re.fullmatch(r"ddpm as shipped \([^)]*\)( \[round \d+\])?", name) is not None


def kind_of(name):
    for kind, pattern in KINDS:
        if re.search(pattern, name, re.IGNORECASE):
            return kind
    return "other"


def fmt(value, spec):
    return (spec % value) if isinstance(value, (int, float)) else "-"


def figures_table(rows):
    print(f"\n{'run':<52} {'img/s':>9} {'ms/step':>8} {'fwd':>7} {'bwd':>7} {'comm':>6} {'opt':>6} {'graph':>7} "
          f"{'mem GiB':>8} {'MFU':>6} {'sample img/s':>12}")
    for r in rows:
        rep = r["report"]
        if "error" in rep:
            print(f"{r['name']:<52} FAILED: {rep['error']} (its output is in the log above)")
            continue
        ph = rep.get("phase_ms", {})
        print(f"{r['name']:<52} {fmt(rep.get('images_per_second'), '%.1f'):>9} {fmt(rep.get('ms_per_step'), '%.2f'):>8} "
              f"{fmt(ph.get('forward'), '%.2f'):>7} {fmt(ph.get('backward'), '%.2f'):>7} "
              f"{fmt(ph.get('communication'), '%.2f'):>6} {fmt(ph.get('optimizer'), '%.2f'):>6} "
              f"{fmt(ph.get('captured_step') or None, '%.2f'):>7} "
              f"{fmt((rep.get('peak_memory_bytes') or 0) / 2**30, '%.2f'):>8} "
              f"{fmt(rep.get('mfu'), '%.3f'):>6} {fmt(rep.get('sampling_images_per_second'), '%.2f'):>12}")


def ratio(mine, theirs, key):
    return mine[key] / theirs[key] if mine.get(key) and theirs.get(key) else None


def ratio_lines(rows):
    if any("round" in r for r in rows):
        return round_lines(rows)
    ours = next((r["report"] for r in rows if is_shipped(r["name"])), None)
    peers = [r for r in rows if r["name"].startswith("diffusers")]
    if ours is None:  # the peer's half of a split run alone
        return
    for label, mine in (("ours", ours), ("ours + CUDA graph", next((r["report"] for r in rows if r["name"].endswith("+ CUDA graph")), None))):
        if mine is None:
            continue
        for r in peers:
            p = r["report"]
            line = f"{label} / {r['name']}: training {fmt(ratio(mine, p, 'images_per_second'), '%.2f')}x"
            if ratio(mine, p, "sampling_images_per_second"):
                line += f", sampling {ratio(mine, p, 'sampling_images_per_second'):.2f}x"
            print(line)
    reduced = next((r for r in rows if "all-reduce at world size 1" in r["name"]), None)
    if reduced:
        print(f"{reduced['name']} / as shipped: {fmt(ratio(reduced['report'], ours, 'images_per_second'), '%.3f')}")
    peer = peers[-1]["report"] if peers else {}
    print(f"FLOPs per image, forward: ours {ours.get('forward_flops_per_image', 0) / 1e9:.3f} G (counted from the layers), "
          f"PyTorch's FlopCounterMode on the peer {peer.get('forward_flops_per_image', 0) / 1e9:.3f} G")
    print(f"device: {ours.get('device_name', '?')}; {ours.get('impl', '?')}, {ours.get('threads', '?')} threads; peer: {peer.get('impl', '?')}, "
          f"torch {peer.get('torch_version', '?')}, {peer.get('threads', '?')} threads")


def round_lines(rows):
    """BENCH_PART=sampling: ours / each peer's sampling images/s within each round (whose runs followed each other),
    then over the rounds, the range."""
    rounds = sorted({r["round"] for r in rows if "round" in r})
    ratios = {}
    for n in rounds:
        here = [r for r in rows if r.get("round") == n]
        ours = next((r["report"] for r in here if is_shipped(r["name"])), None)
        if ours is None:
            continue
        parts = []
        for r in here:
            if r["name"].startswith("diffusers") and ratio(ours, r["report"], "sampling_images_per_second"):
                value = ratio(ours, r["report"], "sampling_images_per_second")
                ratios.setdefault(r["name"].split(" [round")[0], []).append(value)
                parts.append(f"{r['name'].split(' [round')[0]} {value:.2f}x")
        print(f"round {n}: ours / " + ", ".join(parts))
    for name, values in ratios.items():
        print(f"sampling, ours / {name}: {min(values):.2f}x - {max(values):.2f}x over {len(values)} round(s)")
    ours = next((r["report"] for r in rows if is_shipped(r["name"])), {})
    peer = next((r["report"] for r in rows if r["name"].startswith("diffusers")), {})
    print(f"device: {ours.get('device_name', '?')}; {ours.get('impl', '?')}, {ours.get('threads', '?')} threads; "
          f"peer: {peer.get('impl', '?')}, torch {peer.get('torch_version', '?')}, {peer.get('threads', '?')} threads")


def sampling_lines(rows):
    """Every run's sampling figures: the ancestral run over sample_steps (ours and the peer's, the same work), then
    our fast samplers of the same model over the config's own T (respaced ancestral, DDIM), images/s and ms per
    model call, and the threads each side ran with."""
    sampled = [r for r in rows if r["report"].get("sampling_images_per_second")]
    if not sampled:
        return
    print(f"\n{'sampling':<52} {'sampler':>22} {'steps':>6} {'img/s':>9} {'ms/call':>8} {'threads':>7}")
    for r in sampled:
        rep = r["report"]
        steps = rep.get("sample_steps")
        ms = 1000.0 * rep["sampling_seconds"] / steps if steps and rep.get("sampling_seconds") else None
        print(f"{r['name']:<52} {'ancestral (all steps)':>22} {fmt(steps, '%d'):>6} "
              f"{rep['sampling_images_per_second']:>9.2f} {fmt(ms, '%.2f'):>8} {fmt(rep.get('threads'), '%d'):>7}")
        for fast in rep.get("sampling_fast", []):
            label = fast["sampler"] + (f" eta {fast['eta']:g}" if "eta" in fast else "")
            if "skipped" in fast:
                print(f"{'':<52} {label:>22} {fast['steps']:>6} skipped: {fast['skipped']}")
                continue
            steps = f"{fast['model_calls']}/{fast['of_timesteps']}"
            print(f"{'':<52} {label:>22} {steps:>6} {fast['images_per_second']:>9.2f} {fast['ms_per_step']:>8.2f}")


def by_kind(profile):
    kinds = {}
    for entry in profile["top"]:
        kinds[kind_of(entry["name"])] = kinds.get(kind_of(entry["name"]), 0.0) + entry["self_ms_per_step"]
    kinds["unlisted"] = profile.get("rest_self_ms_per_step", 0.0)
    return kinds


def profile_tables(rows, key, title, flops_per_step):
    profiled = [r for r in rows if key in r["report"]]
    if not profiled:
        return
    columns = list(dict.fromkeys(k for k, _ in KINDS)) + ["other", "unlisted"]
    print(f"\n{title}, ms per step ({profiled[0]['report'][key]['steps']} profiled steps). timed: the step without the "
          f"profiler; busy: the device's (GPU) or the operators' (CPU)\nbusy time, and its share of timed; events: "
          f"kernels (GPU) or operators (CPU) per step; then the self time by kind of kernel or operator.")
    print(f"{'run':<52} {'timed':>7} {'busy':>7} {'busy%':>6} {'events':>7} " + " ".join(f"{c:>11}" for c in columns)
          + (f" {'mm TFLOP/s':>10}" if flops_per_step else ""))
    for r in profiled:
        p = r["report"][key]
        kinds = by_kind(p)
        line = (f"{r['name']:<52} {p['timed_ms_per_step']:>7.2f} {p['busy_ms_per_step']:>7.2f} "
                f"{100 * p['busy_share_of_timed_step']:>5.1f}% {p['events_per_step']:>7.0f} "
                + " ".join(f"{kinds.get(c, 0.0):>11.2f}" for c in columns))
        if flops_per_step and kinds.get("matmul/conv"):
            # The model's FLOPs are all in its convolutions, linear layers and attention products.
            line += f" {flops_per_step(r['report']) / (kinds['matmul/conv'] + kinds.get('attention', 0.0)) / 1e9:>10.3g}"
        print(line)
    for r in profiled:
        print(f"  largest in '{r['name']}':")
        for entry in r["report"][key]["top"][:8]:
            print(f"    {entry['self_ms_per_step']:8.3f} ms {entry['calls_per_step']:7.1f}x  [{kind_of(entry['name'])}] {entry['name'][:110]}")


def warmup_lines(rows):
    """The peer's warm-up before its timed steps apart from them: under torch.compile, its compilation (for
    training, then again for inference), which a user pays at every start and the timed figures leave out."""
    for r in rows:
        rep = r["report"]
        parts = [f"{label} {rep[key]:.1f} s" for key, label in (("warmup_seconds", "before training"),
                                                                  ("sampling_warmup_seconds", "before sampling"))
                 if isinstance(rep.get(key), (int, float))]
        if r["name"].startswith("diffusers") and parts:
            print(f"{r['name']}: warm-up{' (compilation, mostly)' if 'compile' in r['name'] else ''} " + ", ".join(parts))


def print_tables(rows):
    """Every table of these reports: the figures, then (of the runs that did not fail) the ratios, the peer's
    warm-up, sampling, and the profiles. launch/gpu/results_table.py prints its benchmark rows with it too."""
    figures_table(rows)
    rows = [r for r in rows if "error" not in r["report"]]
    ratio_lines(rows)
    warmup_lines(rows)
    sampling_lines(rows)

    def train_flops(rep):
        return 3.0 * rep.get("forward_flops_per_image", 0) * rep.get("batch", 0)

    def sample_flops(rep):
        return rep.get("forward_flops_per_image", 0) * rep.get("sample_batch", 0)

    profile_tables(rows, "profile", "Training step profile", train_flops)
    profile_tables(rows, "sampling_profile", "Sampling step profile", sample_flops)


def main(path):
    rows = [json.loads(line) for line in open(path) if line.strip()]
    for r in rows:  # BENCH_PART=sampling's rounds, named apart
        if "round" in r:
            r["name"] += f" [round {r['round']}]"
    print_tables(rows)


if __name__ == "__main__":
    main(sys.argv[1])
