#!/usr/bin/env python3
"""The diffusers side of tests/interop/diffusers_test.sh (the torch venv's python, with diffusers and safetensors).

    diffusers_reference.py inputs OUT --channels C --size S --batch B --timesteps T --seed N
        x ~ N(0, I) [B, C, S, S] float32 and t [B] int64 (0, T-1 and values between), as safetensors
    diffusers_reference.py eps MODEL_DIR INPUTS OUT [--downsample-padding P]
        UNet2DModel.from_pretrained(MODEL_DIR or MODEL_DIR/unet), float32, eval: its output for INPUTS as `eps`
        (P: build it with that padding instead of its config's, the negative control)
    diffusers_reference.py compare A B NAME_A NAME_B TOL
        max |A[NAME_A] - B[NAME_B]|: exit 0 when <= TOL · max(1, max |B|), 1 when not (printed either way): float32
        round-off grows with the output's scale (a random 35.7M-parameter U-Net gives |ε| near 5)
    diffusers_reference.py differ A B NAME_A NAME_B MIN
        exit 0 when max |A - B| >= MIN (the two are different functions), 1 when not
    diffusers_reference.py pipeline DIR T SCHEDULE
        DDPMPipeline.from_pretrained(DIR) samples 2 images in T steps; its scheduler's betas are ddpm's schedule
    diffusers_reference.py make DIR LAYOUT DTYPE SEED
        a UNet2DModel of LAYOUT (smoke, smoke_learned_range, cifar10) with random weights, saved by diffusers itself
        as a DDPMPipeline (weights in DTYPE: float32, bfloat16, float16)
    diffusers_reference.py same-tensors A.safetensors B.safetensors
        exit 0 when both hold the same names, shapes and float32 values bit for bit (after upcasting), 1 when not
Exit 2 (with a message) for a harness error.
"""
import math
import os
import sys


def fail_harness(message):
    print(f"diffusers_reference.py: {message}", file=sys.stderr)
    sys.exit(2)


try:
    import torch
    import diffusers
    from safetensors.torch import load_file, save_file
except ImportError as e:  # the caller skips first; reaching this is a harness error
    fail_harness(f"cannot import: {e}")

LAYOUTS = {
    # configs/smoke.yaml: ch 32, mult (1, 2), 1 block, attention at 14, padding 1, 28x28x1
    "smoke": dict(sample_size=28, in_channels=1, out_channels=1, block_out_channels=(32, 64), layers_per_block=1,
                  down_block_types=("DownBlock2D", "AttnDownBlock2D"), up_block_types=("AttnUpBlock2D", "UpBlock2D"),
                  downsample_padding=1),
    "smoke_learned_range": dict(sample_size=28, in_channels=1, out_channels=2, block_out_channels=(32, 64),
                                layers_per_block=1, down_block_types=("DownBlock2D", "AttnDownBlock2D"),
                                up_block_types=("AttnUpBlock2D", "UpBlock2D"), downsample_padding=1),
    # configs/cifar10.yaml: Ho et al.'s network as google/ddpm-cifar10-32 has it (padding 0)
    "cifar10": dict(sample_size=32, in_channels=3, out_channels=3, block_out_channels=(128, 256, 256, 256),
                    layers_per_block=2, down_block_types=("DownBlock2D", "AttnDownBlock2D", "DownBlock2D", "DownBlock2D"),
                    up_block_types=("UpBlock2D", "UpBlock2D", "AttnUpBlock2D", "UpBlock2D"), downsample_padding=0),
}
DDPM_FIXED = dict(attention_head_dim=None, norm_num_groups=32, norm_eps=1e-6, act_fn="silu",
                  time_embedding_type="positional", flip_sin_to_cos=False, freq_shift=1)
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def unet_dir(path):
    return os.path.join(path, "unet") if os.path.isfile(os.path.join(path, "unet", "config.json")) else path


def cmd_inputs(args):
    import argparse
    p = argparse.ArgumentParser()
    p.add_argument("out")
    for name in ("--channels", "--size", "--batch", "--timesteps", "--seed"):
        p.add_argument(name, type=int, required=True)
    a = p.parse_args(args)
    g = torch.Generator().manual_seed(a.seed)
    x = torch.randn(a.batch, a.channels, a.size, a.size, generator=g)
    t = torch.linspace(0, a.timesteps - 1, a.batch).round().to(torch.int64)
    save_file({"x": x.contiguous(), "t": t.contiguous()}, a.out)


def cmd_eps(args):
    model_dir, inputs, out = args[:3]
    padding = None
    if len(args) == 5 and args[3] == "--downsample-padding":
        padding = int(args[4])
    path = unet_dir(model_dir)
    if padding is None:
        model = diffusers.UNet2DModel.from_pretrained(path, torch_dtype=torch.float32, low_cpu_mem_usage=False)
    else:  # the same weights in the other padding's network
        config = dict(diffusers.UNet2DModel.load_config(path))
        config["downsample_padding"] = padding
        model = diffusers.UNet2DModel.from_config(config)
        model.load_state_dict(load_file(os.path.join(path, "diffusion_pytorch_model.safetensors")))
        model = model.float()
    model.eval()
    data = load_file(inputs)
    with torch.no_grad():
        eps = model(data["x"], data["t"]).sample
    save_file({"eps": eps.float().contiguous()}, out)


def max_difference(a, b, name_a, name_b):
    x, y = load_file(a)[name_a], load_file(b)[name_b]
    if x.shape != y.shape:
        print(f"shapes differ: {tuple(x.shape)} and {tuple(y.shape)}")
        sys.exit(1)
    return (x.double() - y.double()).abs().max().item(), y.abs().max().item()


def cmd_compare(args):
    a, b, name_a, name_b, tol = args
    diff, scale = max_difference(a, b, name_a, name_b)
    bound = float(tol) * max(1.0, scale)
    print(f"max |{name_a} - {name_b}| = {diff:.3g}, |{name_b}| up to {scale:.3g}: tolerance {tol} x max(1, {scale:.3g}) = {bound:.3g}")
    sys.exit(0 if diff <= bound else 1)


def cmd_differ(args):
    a, b, name_a, name_b, minimum = args
    diff, scale = max_difference(a, b, name_a, name_b)
    print(f"max |{name_a} - {name_b}| = {diff:.3g} (|{name_b}| up to {scale:.3g}; expected at least {minimum})")
    sys.exit(0 if diff >= float(minimum) else 1)


def ddpm_betas(timesteps, schedule):
    """ddpm's β schedules (trainer/diffusion/schedule.cpp) in float64."""
    if schedule == "linear":
        scale = 1000.0 / timesteps
        return torch.linspace(scale * 1e-4, scale * 0.02, timesteps, dtype=torch.float64)
    f = lambda t: math.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2
    return torch.tensor([min(1 - f((i + 1) / timesteps) / f(i / timesteps), 0.999) for i in range(timesteps)],
                        dtype=torch.float64)


def cmd_pipeline(args):
    directory, timesteps, schedule = args[0], int(args[1]), args[2]
    pipe = diffusers.DDPMPipeline.from_pretrained(directory, low_cpu_mem_usage=False)
    pipe.set_progress_bar_config(disable=True)
    betas = pipe.scheduler.betas.double()
    expected = ddpm_betas(timesteps, schedule)
    if betas.shape != expected.shape or (betas - expected).abs().max().item() > 1e-7:
        print(f"the scheduler's betas are not ddpm's {schedule} schedule of T = {timesteps}")
        sys.exit(1)
    # DDPMPipeline's default is 1000 steps: a process of fewer takes all of its own.
    images = pipe(batch_size=2, num_inference_steps=timesteps, generator=torch.Generator().manual_seed(0),
                  output_type="np").images
    size = pipe.unet.config.sample_size
    if images.shape[:3] != (2, size, size) or not (images.min() >= 0 and images.max() <= 1):
        print(f"DDPMPipeline sampled {images.shape} in [{images.min()}, {images.max()}]")
        sys.exit(1)
    print(f"DDPMPipeline: {pipe.scheduler.config.variance_type} variance, {timesteps} steps, images {images.shape}, "
          f"pixel std {images.std():.3f}")


def cmd_make(args):
    directory, layout, dtype, seed = args[0], args[1], args[2], int(args[3])
    torch.manual_seed(seed)
    unet = diffusers.UNet2DModel(**LAYOUTS[layout], **DDPM_FIXED)
    with torch.no_grad():  # no parameter at a special value (norms at 1 and 0, the output conv), so a swap shows
        for p in unet.parameters():
            p.add_(0.05 * torch.randn_like(p))
    timesteps = 1000 if layout == "cifar10" else 100
    scale = 1000.0 / timesteps
    scheduler = diffusers.DDPMScheduler(num_train_timesteps=timesteps, beta_start=scale * 1e-4, beta_end=scale * 0.02,
                                        beta_schedule="linear",
                                        variance_type="learned_range" if "learned" in layout else "fixed_large")
    torch.nn.Module.to(unet, DTYPES[dtype])  # (diffusers' own .to() warns about keeping modules in float32: it has none)
    diffusers.DDPMPipeline(unet=unet, scheduler=scheduler).save_pretrained(directory,
                                                                                              safe_serialization=True)


def cmd_same_tensors(args):
    a, b = load_file(args[0]), load_file(args[1])
    if sorted(a) != sorted(b):
        print(f"the names differ: {sorted(set(a) ^ set(b))[:5]}")
        sys.exit(1)
    for name in sorted(a):
        x, y = a[name].float(), b[name].float()
        if x.shape != y.shape or not torch.equal(x, y):
            print(f"tensor {name} differs")
            sys.exit(1)
    print(f"{len(a)} tensors bitwise equal")


COMMANDS = {"inputs": cmd_inputs, "eps": cmd_eps, "compare": cmd_compare, "differ": cmd_differ,
            "pipeline": cmd_pipeline, "make": cmd_make, "same-tensors": cmd_same_tensors}

if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] not in COMMANDS:
        fail_harness("usage: " + " | ".join(COMMANDS))
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    diffusers.utils.logging.disable_progress_bar()
    try:
        COMMANDS[sys.argv[1]](sys.argv[2:])
    except SystemExit:
        raise
    except Exception as e:  # noqa: BLE001: anything else is the harness's failure, not a difference
        fail_harness(f"{sys.argv[1]}: {type(e).__name__}: {e}")
