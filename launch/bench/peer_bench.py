#!/usr/bin/env python3
"""The peer of `ddpm bench`: the same DDPM U-Net as diffusers' UNet2DModel, trained by the plain PyTorch loop a
user would write (improved-diffusion's and diffusers' training scripts do the same work per step), eager or
under torch.compile; then batched ancestral sampling with it. Prints one JSON object on its last line.

    python launch/bench/peer_bench.py --device cuda --image-size 32 --in-channels 3 --base-channels 128 \
        --channel-mult 1,2,2,2 --num-res-blocks 2 --attention-resolutions 16 --dropout 0.1 --downsample-padding 0 \
        --batch 128 --precision bf16 --channels-last --mode compile --steps 100 --warmup 20 \
        --sample-batch 256 --sample-steps 1000

The step is ddpm's step: t ~ U{1..T}, ε ~ N(0, I), x_t = √ᾱ_t x_0 + √(1-ᾱ_t) ε (eq. 4), the simple loss
‖ε - ε_θ(x_t, t)‖² (eq. 14), global gradient-norm clipping at 1, Adam (fused where PyTorch has it, as ddpm's
fused_adam) with linear warmup, an EMA update of every weight. Both take the same batch and precision (bf16
autocast, float32 master weights). The peer's batch is a fixed tensor on the device, so data loading costs it
nothing: where the two differ, the comparison favours the peer.

Where diffusers is not installed, wheels from `--wheels DIR` (launch/bench/fetch_peer_wheels.sh: the GPU machine
cannot reach PyPI) are installed, without their dependencies and without an index, into DIR/site-cpXY.
"""
import argparse
import inspect
import json
import os
import resource
import subprocess
import sys
import time

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda")
    p.add_argument("--image-size", type=int, default=32)
    p.add_argument("--in-channels", type=int, default=3)
    p.add_argument("--base-channels", type=int, default=128)
    p.add_argument("--channel-mult", default="1,2,2,2")
    p.add_argument("--num-res-blocks", type=int, default=2)
    p.add_argument("--attention-resolutions", default="16")
    p.add_argument("--dropout", type=float, default=0.1)
    p.add_argument("--downsample-padding", type=int, choices=(0, 1), default=1,
                   help="the config's model.downsample_padding: 1 pads every side, 0 is Ho et al.'s (0, 1, 0, 1)")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--precision", choices=["fp32", "bf16"], default="bf16")
    p.add_argument("--channels-last", action="store_true")
    p.add_argument("--mode", choices=["eager", "compile"], default="eager")
    p.add_argument("--steps", type=int, default=100, help="timed training steps (0: no training, sampling only)")
    p.add_argument("--warmup", type=int, default=20)
    p.add_argument("--timesteps", type=int, default=1000)
    p.add_argument("--sample-batch", type=int, default=0, help="0: no sampling benchmark")
    p.add_argument("--sample-steps", type=int, default=1000)
    p.add_argument("--lr", type=float, default=2e-4)
    p.add_argument("--lr-warmup", type=int, default=5000)
    p.add_argument("--ema-rate", type=float, default=0.9999)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--profile-steps", type=int, default=0,
                   help="then profile this many training steps (and sampling steps, at least 25), as ddpm bench does")
    p.add_argument("--wheels", default=os.path.join(REPO_ROOT, ".cache", "peer_wheels"))
    return p.parse_args()


def import_diffusers(wheels):
    """diffusers from the environment, else from the carried wheels (installed --no-deps, no index)."""
    try:
        import diffusers  # noqa: F401
        return diffusers
    except ImportError:
        pass
    tag = f"cp{sys.version_info.major}{sys.version_info.minor}"
    requirements = os.path.join(wheels, f"requirements-{tag}.txt")
    if not os.path.isfile(requirements):
        sys.exit(f"peer_bench: diffusers is not installed and {requirements} does not exist "
                 f"(pip install diffusers, or run launch/bench/fetch_peer_wheels.sh where PyPI is reachable)")
    site = os.path.join(wheels, f"site-{tag}")
    if not os.path.isdir(site):
        missing = []
        for line in open(requirements):
            name = line.strip().split("==")[0]
            if name and subprocess.run([sys.executable, "-m", "pip", "show", "-q", name],
                                       capture_output=True).returncode != 0:
                missing.append(line.strip())
        os.makedirs(site + ".partial", exist_ok=True)
        if missing:
            subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-index", "--find-links",
                            wheels, "--target", site + ".partial", *missing], check=True)
        os.rename(site + ".partial", site)  # all or nothing: a failed install is retried next time
    sys.path.insert(0, site)
    import diffusers
    return diffusers


def build_unet(diffusers, args):
    """DDPM's U-Net (Ho et al. 2020, Appendix B) in diffusers' terms, as in google/ddpm-cifar10-32's config."""
    mult = [int(m) for m in args.channel_mult.split(",")]
    attention = {int(r) for r in args.attention_resolutions.split(",") if r}
    attended = [args.image_size // 2 ** level in attention for level in range(len(mult))]
    kwargs = dict(
        sample_size=args.image_size,
        in_channels=args.in_channels,
        out_channels=args.in_channels,
        block_out_channels=tuple(args.base_channels * m for m in mult),
        layers_per_block=args.num_res_blocks,  # the up path has one more per level, as in DDPM
        down_block_types=tuple("AttnDownBlock2D" if a else "DownBlock2D" for a in attended),
        up_block_types=tuple("AttnUpBlock2D" if a else "UpBlock2D" for a in reversed(attended)),
        attention_head_dim=None,  # one head over all channels, as DDPM
        norm_num_groups=32,
        norm_eps=1e-6,
        act_fn="silu",
        time_embedding_type="positional",
        flip_sin_to_cos=False,
        freq_shift=1,
        downsample_padding=args.downsample_padding,  # the same function as the config it is compared with
        dropout=args.dropout,
    )
    if "dropout" not in inspect.signature(diffusers.UNet2DModel.__init__).parameters:
        kwargs.pop("dropout")  # older diffusers: no dropout in the res blocks (the step costs a little less)
    return diffusers.UNet2DModel(**kwargs)


def linear_schedule(timesteps):
    """β_t linear in [1e-4, 0.02] scaled to T (Ho et al. 2020, §4), in float64 like ddpm's constants."""
    import torch
    scale = 1000.0 / timesteps
    betas = torch.linspace(scale * 1e-4, scale * 0.02, timesteps, dtype=torch.float64)
    alphas_cumprod = torch.cumprod(1.0 - betas, dim=0)
    return betas, alphas_cumprod


class Timer:
    """Wall time of a device's queued work: CUDA events on GPUs, synchronized host clocks on CPUs."""

    def __init__(self, device):
        import torch
        self.torch, self.device = torch, device

    def sync(self):
        if self.device.type == "cuda":
            self.torch.cuda.synchronize(self.device)

    def __enter__(self):
        self.sync()
        if self.device.type == "cuda":
            self.start, self.end = (self.torch.cuda.Event(enable_timing=True) for _ in range(2))
            self.start.record()
        else:
            self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc):
        if self.device.type == "cuda":
            self.end.record()
            self.end.synchronize()
            self.seconds = self.start.elapsed_time(self.end) / 1000.0
        else:
            self.seconds = time.perf_counter() - self.t0


def peak_memory(torch, device):
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device)
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def reset_peak_memory(torch, device):
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def summarize_profile(events, steps, top=40):
    """ddpm's summarize_profile (trainer/profile.cpp), line for line, so the two profiles compare: per step, the
    busy time (the union of the events' intervals over all tracks) and each name's self time (its duration less
    that of the events nested in it on its track) and calls, the `top` largest by self time listed."""
    events = sorted(((n, tr, s, max(e, s)) for n, tr, s, e in events), key=lambda ev: (ev[1], ev[2], -ev[3]))
    self_ns = [float(e - s) for _, _, s, e in events]
    open_ = []
    for i, (_, track, start, end) in enumerate(events):
        while open_ and (events[open_[-1]][1] != track or events[open_[-1]][3] <= start):
            open_.pop()
        if open_:
            self_ns[open_[-1]] -= min(end, events[open_[-1]][3]) - start
        open_.append(i)
    totals = {}
    for (name, _, _, _), own in zip(events, self_ns):
        t = totals.setdefault(name, [0.0, 0])
        t[0] += max(own, 0.0)
        t[1] += 1
    busy, covered = 0.0, 0
    for _, _, start, end in sorted(events, key=lambda ev: ev[2]):
        frm = max(start, covered)
        busy += max(end - frm, 0)
        covered = max(covered, end)
    ranked = sorted(totals.items(), key=lambda kv: (-kv[1][0], kv[0]))
    per_step = 1e-6 / steps
    listed = [{"name": n if len(n) <= 200 else n[:200] + "...", "self_ms_per_step": t[0] * per_step,
               "calls_per_step": t[1] / steps} for n, t in ranked[:top]]
    total = sum(t[0] for t in totals.values())
    return {"steps": steps, "events_per_step": len(events) / steps, "distinct_names": len(totals),
            "busy_ms_per_step": busy * per_step, "self_ms_per_step": total * per_step, "top": listed,
            "rest_self_ms_per_step": (total - sum(t[0] for _, t in ranked[:top])) * per_step}


def profile(torch, device, run, steps, timed_ms_per_step):
    """Runs `run` (which does `steps` steps) under PyTorch's profiler, as ddpm's Profiler does: the device's
    kernels, copies and fills on a GPU, the operators on a CPU; then its summary against the timed step."""
    import warnings
    from torch.profiler import ProfilerActivity
    warnings.filterwarnings("ignore", message=".*Profiler clears events at the end of each cycle")
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with torch.profiler.profile(activities=activities) as prof:
        run()
        Timer(device).sync()
    wanted = torch.autograd.DeviceType.CUDA if device.type == "cuda" else torch.autograd.DeviceType.CPU
    events = []
    for e in prof.profiler.kineto_results.events():
        if e.device_type() != wanted or e.is_user_annotation():
            continue
        if device.type == "cpu" and e.is_async():
            continue
        track = e.device_resource_id() if device.type == "cuda" else e.start_thread_id()
        events.append((e.name(), track, e.start_ns(), e.end_ns()))
    summary = summarize_profile(events, steps)
    summary["timed_ms_per_step"] = timed_ms_per_step
    summary["busy_share_of_timed_step"] = summary["busy_ms_per_step"] / timed_ms_per_step
    return summary


def forward_flops_per_image(torch, model, args, device):
    """FLOPs of one forward pass per image as PyTorch counts them (matmuls, convolutions, attention): the check
    of the count ddpm makes from its layers. Attention runs through the math backend here, whose batched matmuls
    the counter sees (it does not count the fused CPU attention kernel)."""
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode
    x = torch.randn(2, args.in_channels, args.image_size, args.image_size, device=device)
    t = torch.tensor([1, 500], device=device)
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), sdpa_kernel(SDPBackend.MATH), counter:
        model(x, t)
    return counter.get_total_flops() / 2


def main():
    args = parse_args()
    diffusers = import_diffusers(args.wheels)
    import torch
    import torch.nn.functional as F

    torch.manual_seed(args.seed)
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.cuda.set_device(device)
        torch.backends.cuda.matmul.allow_tf32 = True  # what ddpm's float32 runs on tensor cores get too
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True
    memory_format = torch.channels_last if args.channels_last else torch.contiguous_format
    model = build_unet(diffusers, args).to(device=device, memory_format=memory_format)
    params = sum(p.numel() for p in model.parameters())
    flops = forward_flops_per_image(torch, model, args, device)
    ema = [p.detach().clone() for p in model.parameters()]
    fused = {"fused": True} if device.type in ("cuda", "cpu") else {"foreach": True}
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr, **fused)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: min(1.0, (step + 1) / args.lr_warmup))
    net = torch.compile(model) if args.mode == "compile" else model
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.precision == "bf16")

    betas, alphas_cumprod = linear_schedule(args.timesteps)
    sqrt_ab = alphas_cumprod.sqrt().float().to(device)
    sqrt_1mab = (1.0 - alphas_cumprod).sqrt().float().to(device)
    shape = (args.batch, args.in_channels, args.image_size, args.image_size)
    x0 = (torch.rand(shape, device=device) * 2 - 1).contiguous(memory_format=memory_format)

    def train_step():
        t = torch.randint(0, args.timesteps, (args.batch,), device=device)
        noise = torch.randn_like(x0)
        x_t = sqrt_ab[t].view(-1, 1, 1, 1) * x0 + sqrt_1mab[t].view(-1, 1, 1, 1) * noise  # eq. 4
        with autocast:
            eps = net(x_t, t).sample
        loss = F.mse_loss(eps.float(), noise)  # eq. 14
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0, foreach=True)
        optimizer.step()
        scheduler.step()
        with torch.no_grad():
            weights = [p.detach() for p in model.parameters()]
            torch._foreach_lerp_(ema, weights, 1.0 - args.ema_rate)
        return loss

    report = {"params": params, "forward_flops_per_image": flops}
    if args.steps > 0:
        model.train()
        compile_start = time.perf_counter()
        for _ in range(args.warmup):
            train_step()
        Timer(device).sync()
        warmup_seconds = time.perf_counter() - compile_start
        reset_peak_memory(torch, device)
        with Timer(device) as timed:
            for _ in range(args.steps):
                loss = train_step()
        images_per_second = args.batch * args.steps / timed.seconds
        report.update({
            "images_per_second": images_per_second,
            "ms_per_step": 1000.0 * timed.seconds / args.steps,
            "peak_memory_bytes": peak_memory(torch, device),
            "final_loss": float(loss.detach()),
            "warmup_seconds": warmup_seconds,
            "achieved_tflops": 3.0 * flops * images_per_second / 1e12,
        })

        if args.profile_steps > 0:
            def profiled_steps():
                for _ in range(args.profile_steps):
                    train_step()
            report["profile"] = profile(torch, device, profiled_steps, args.profile_steps, report["ms_per_step"])

    if args.sample_batch > 0:
        report.update(sampling_figures(torch, net, model, args, device, autocast, memory_format))

    report.update({
        "impl": f"diffusers {diffusers.__version__} UNet2DModel, PyTorch loop ({args.mode})",
        "torch_version": torch.__version__,
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "threads": torch.get_num_threads(),
        "batch": args.batch,
        "precision": args.precision,
        "channels_last": args.channels_last,
        "mode": args.mode,
        "warmup": args.warmup,
        "steps": args.steps,
        "profile_steps": args.profile_steps,
    })
    print(json.dumps(report))


def sampling_figures(torch, net, model, args, device, autocast, memory_format):
    """Ancestral sampling (Algorithm 2) with σ_t² = β_t (fixed_large), as ddpm samples by default."""
    betas, alphas_cumprod = linear_schedule(args.sample_steps)
    alphas = 1.0 - betas
    coef_x = (1.0 / alphas.sqrt()).float().tolist()
    coef_eps = (betas / (1.0 - alphas_cumprod).sqrt() / alphas.sqrt()).float().tolist()
    sigma = betas.sqrt().float().tolist()
    model.eval()

    def sample(steps):
        x = torch.randn(args.sample_batch, args.in_channels, args.image_size, args.image_size, device=device)
        x = x.contiguous(memory_format=memory_format)
        for i in reversed(range(steps)):
            t = torch.full((args.sample_batch,), i, device=device, dtype=torch.long)
            with autocast:
                eps = net(x, t).sample.float()
            x = coef_x[i] * x - coef_eps[i] * eps  # the mean of eq. 11
            if i > 0:
                x = x + sigma[i] * torch.randn_like(x)
        return x.clamp(-1, 1)

    warmup_start = time.perf_counter()
    with torch.inference_mode():
        sample(min(args.sample_steps, 25))  # warm-up: kernel selection, compilation for inference
    Timer(device).sync()
    warmup_seconds = time.perf_counter() - warmup_start
    with torch.inference_mode():
        reset_peak_memory(torch, device)
        with Timer(device) as timed:
            sample(args.sample_steps)
    out = {
        "sampling_images_per_second": args.sample_batch / timed.seconds,
        "sampling_seconds": timed.seconds,
        "sampling_warmup_seconds": warmup_seconds,  # under torch.compile: its compilation for inference, mostly
        "sample_batch": args.sample_batch,
        "sample_steps": args.sample_steps,
        "sampling_peak_memory_bytes": peak_memory(torch, device),
    }
    if args.profile_steps > 0:
        steps = min(max(args.profile_steps, 25), args.sample_steps)  # as many as ddpm bench profiles
        with torch.inference_mode():
            out["sampling_profile"] = profile(torch, device, lambda: sample(steps), steps,
                                              1000.0 * timed.seconds / args.sample_steps)
    return out


if __name__ == "__main__":
    main()
