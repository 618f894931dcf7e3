#!/usr/bin/env python3
"""results_table.py RESULTS.jsonl: the tables of a launch/gpu/run.sh run from its rows (launch/gpu/rows.sh's lines):
the machine, every check with its figures, then the benchmark's tables (launch/bench/bench_table.py) for training
and for sampling, and a block for the README's performance table. Rows that did not run say why."""
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "bench"))
import bench_table  # noqa: E402


def load(path):
    rows = []
    for number, line in enumerate(open(path), 1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except ValueError as e:
                print(f"{path}:{number}: not a JSON line ({e}); left out")
    return rows


def figures(report):
    """The few numbers of a check's report worth a column: what it compared and how close it came."""
    keys = ("distance", "tolerance", "noise_floor", "first_loss", "last_loss", "deterministic_repeat_bitwise",
            "nccl_bitwise", "graph_bitwise", "differing", "largest", "images_per_second", "reference_images_per_second")
    parts = []
    for key in keys:
        if key in report and report[key] is not None:
            value = report[key]
            parts.append(f"{key} {value:.4g}" if isinstance(value, float) else f"{key} {value}")
    return ", ".join(parts)


def checks_table(rows):
    checks = [r for r in rows if r["phase"] in ("machine", "checks")]
    if not checks:
        return
    print(f"{'row':<34} {'status':<8} {'s':>6}  figures")
    for r in checks:
        detail = figures(r.get("report", {})) if r["name"] != "machine" else json.dumps(r.get("report", {}))
        if r.get("reason"):
            detail = f"{r['reason']}; {detail}" if detail else r["reason"]
        print(f"{r['name']:<34} {r['status']:<8} {r['seconds']:>6.1f}  {detail}")


def bench_rows(rows, phases):
    """launch/bench/bench.sh's {"name", "report"} lines of the rows of these phases; a row that did not give one is a
    failed row of the table, with its status."""
    out = []
    for r in rows:
        if r["phase"] not in phases:
            continue
        report = r.get("report", {})
        if "name" in report and "report" in report:
            out.append({"name": report["name"], "report": report["report"], **({"round": 1} if "round" in report else {})})
        else:
            out.append({"name": r["name"], "report": {"error": f"{r['status']}: {r.get('reason', 'no report')}"}})
    return out


def bench_tables(rows, title):
    if rows:
        print(f"\n## {title}")
        bench_table.print_tables(rows)


def readme_block(rows):
    """The lines the README's performance table takes from this run: the machine, the command, and our shipped
    row against the peer's."""
    machine = next((r.get("report", {}) for r in rows if r["name"] == "machine"), {})
    by_key = {r["name"]: r.get("report", {}).get("report", {}) for r in rows if r["name"].startswith("bench.")}
    ours, peer_eager, peer_compile = (by_key.get(k, {}) for k in ("bench.shipped", "bench.peer_eager", "bench.peer_compile"))
    print("\n## For the README")
    print(f"Measured {machine.get('date', '?')} on {machine.get('gpu', machine.get('device_name', '?'))} "
          f"(driver {machine.get('driver', '?')}), torch {machine.get('torch', '?')}, CUDA {machine.get('cuda', '?')}, "
          f"cuDNN {machine.get('cudnn', '?')}, NCCL {machine.get('nccl', '?')}; `bash launch/gpu/run.sh` "
          f"({machine.get('ddpm', '?')}, binaries {machine.get('binaries', '?')}).")

    def cell(report, key, spec):
        value = report.get(key)
        return spec % value if isinstance(value, (int, float)) else "-"

    if ours:
        phases = ours.get("phase_ms", {})
        print(f"| ours as shipped | {cell(ours, 'images_per_second', '%.0f')} img/s | {cell(ours, 'ms_per_step', '%.2f')} ms/step "
              f"(forward {cell(phases, 'forward', '%.2f')}, backward {cell(phases, 'backward', '%.2f')}, "
              f"optimizer {cell(phases, 'optimizer', '%.2f')}) | {(ours.get('peak_memory_bytes') or 0) / 2**30:.2f} GiB | "
              f"MFU {cell(ours, 'mfu', '%.3f')} of {cell(ours, 'matmul_peak_tflops', '%.4g')} TFLOP/s measured |")
    for name, peer in (("diffusers eager", peer_eager), ("diffusers torch.compile", peer_compile)):
        if ours and peer:
            ratio = bench_table.ratio(ours, peer, "images_per_second")
            print(f"| ours / {name} | {bench_table.fmt(ratio, '%.2f')}x training |")


def section(title, make, *args):
    """One table; a row with fields missing (a partial run) costs that table, not the ones after it."""
    try:
        make(*args)
    except Exception as e:  # noqa: BLE001: the table of a run stopped midway must still print what it can
        print(f"\n({title}: not printed: {type(e).__name__}: {e})")


def main(path):
    rows = load(path)
    section("checks", checks_table, rows)
    section("training", bench_tables, bench_rows(rows, ("ours", "peer")), "Training (launch/bench/bench.sh gpu, a row a key)")
    section("sampling", bench_tables, bench_rows(rows, ("sampling",)), "Sampling (BENCH_PART=sampling, one round)")
    section("README block", readme_block, rows)
    counts = {}
    for r in rows:
        counts[r["status"]] = counts.get(r["status"], 0) + 1
    print("\nrows: " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items())))


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
