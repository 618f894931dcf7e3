#!/usr/bin/env python3
"""machine.py DDPM_VERSION BINARIES: the first row of launch/gpu/run.sh, one JSON line: the GPU, its driver, and the
versions every figure of the run depends on (torch, CUDA, cuDNN, NCCL, Python), with the date. Exits 1 when torch
sees no CUDA device: nothing after it could run."""
import datetime
import json
import platform
import subprocess
import sys


def nvidia_smi():
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total,clocks.max.sm,power.limit",
                              "--format=csv,noheader"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as e:
        return {"nvidia_smi_error": str(e)}
    if out.returncode != 0:
        return {"nvidia_smi_error": (out.stderr or out.stdout).strip()[-500:]}
    fields = [f.strip() for f in out.stdout.splitlines()[0].split(",")]
    keys = ["gpu", "driver", "memory_total", "max_sm_clock", "power_limit"]
    return dict(zip(keys, fields))


def main(ddpm_version, binaries):
    report = {"date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
              "ddpm": ddpm_version, "binaries": binaries, "python": platform.python_version(),
              "kernel": platform.release()}
    report.update(nvidia_smi())
    import torch
    report.update({"torch": torch.__version__, "cuda": torch.version.cuda,
                   "cudnn": torch.backends.cudnn.version(), "cuda_available": torch.cuda.is_available()})
    if torch.cuda.is_available():
        properties = torch.cuda.get_device_properties(0)
        report.update({"device_name": properties.name, "multiprocessors": properties.multi_processor_count,
                       "capability": f"{properties.major}.{properties.minor}",
                       "device_memory_gib": round(properties.total_memory / 2**30, 1),
                       "nccl": ".".join(map(str, torch.cuda.nccl.version()))})
    print(json.dumps(report))
    sys.exit(0 if report["cuda_available"] else 1)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
