#!/usr/bin/env python3
"""The Python side of tests/fid: fixtures, and what numpy, scipy and pytorch-fid compute on them.

  make DIR                 the small TorchScript network and image sets of fid_test.sh (see make())
  stats NET IMAGES.npz OUT the network's features of arr_0 in float64, np.mean and np.cov(rowvar=False) -> OUT
  compare DDPM.npz REF.npz RTOL      mu and sigma of two statistics files within RTOL (relative to the largest
                           |entry|); ddpm's file must hold float64 [D] and [D, D]
  fid A.npz B.npz VALUE RTOL         pytorch-fid's calculate_frechet_distance (scipy's sqrtm) on two statistics files
                           equals VALUE within RTOL
  pngs DIR                 a few RGB and gray PNGs of odd sizes (DIR/rgb, DIR/gray) for the Inception parity test
  pytorch-fid-stats STATE_DICT FOLDER OUT [--align-corners]
                           pytorch-fid's own InceptionV3 (its fid_inception_v3, the download replaced by STATE_DICT)
                           and its pipeline from files (ImagePathDataset, get_activations) -> mu, sigma in OUT;
                           --align-corners resizes the other way, to show that the comparison would see it
Exit 0: as expected; 1: a difference (printed); 2: the check could not run (a missing package, an unreadable file).
"""
import os
import sys

try:
    import numpy as np
    import torch
except ImportError as e:
    print(f"fid_reference.py: {e}", file=sys.stderr)
    sys.exit(2)


def load_stats(path):
    with np.load(path) as f:
        return f["mu"], f["sigma"]


class SmallNet(torch.nn.Module):
    """float32 [N, 3, H, W] in [0, 255] -> [N, 16]: the interface of an exported Inception, in miniature."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.conv2 = torch.nn.Conv2d(8, 16, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.tanh(self.conv(x / 255.0 * 2.0 - 1.0))
        h = torch.tanh(self.conv2(h)) + h.mean(1, keepdim=True) ** 2
        return h.mean(dim=(2, 3)) * 10.0


class FourDimNet(torch.nn.Module):
    """Returns [N, 16, 1, 1]: not the [N, D] ddpm fid expects."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(2, 3), keepdim=True).repeat(1, 5, 1, 1)[:, :16]


def make(out):
    torch.manual_seed(0)
    torch.jit.script(SmallNet().eval()).save(os.path.join(out, "net.pt"))
    torch.jit.script(FourDimNet()).save(os.path.join(out, "four_dim.pt"))
    rng = np.random.default_rng(1)
    a = rng.integers(0, 256, size=(61, 12, 10, 3), dtype=np.uint8)
    b = np.clip(rng.normal(170, 40, size=(45, 12, 10, 3)), 0, 255).astype(np.uint8)
    g = rng.integers(0, 200, size=(30, 12, 10, 1), dtype=np.uint8)
    np.savez(os.path.join(out, "a.npz"), a)  # arr_0, as guided-diffusion writes samples
    np.savez(os.path.join(out, "b.npz"), arr_0=b)
    np.savez(os.path.join(out, "gray.npz"), samples=g)  # the only array, not named arr_0
    np.savez(os.path.join(out, "one.npz"), a[:1])
    # The bad ones.
    np.savez(os.path.join(out, "no_arr0.npz"), images=a[:4], labels=np.zeros(4))
    np.savez(os.path.join(out, "float_images.npz"), a.astype(np.float32))
    np.savez(os.path.join(out, "chw_images.npz"), a.transpose(0, 3, 1, 2))  # N, C, H, W: 12 "channels"
    np.savez(os.path.join(out, "d8_stats.npz"), mu=np.zeros(8), sigma=np.eye(8))
    np.savez(os.path.join(out, "no_sigma.npz"), mu=np.zeros(16))
    np.savez(os.path.join(out, "float32_stats.npz"), mu=np.zeros(16, np.float32), sigma=np.eye(16, dtype=np.float32))
    # b's images as PNG files, and a folder with one odd size.
    from PIL import Image
    for name, images in (("b_png", b), ("mixed_png", b[:3])):
        os.makedirs(os.path.join(out, name))
        for i, image in enumerate(images):
            Image.fromarray(image).save(os.path.join(out, name, f"{i:04d}.png"))
    Image.fromarray(b[0, :9, :9]).save(os.path.join(out, "mixed_png", "0001a.png"))
    # The first 40 Fashion-MNIST test images (for the --config route), as samples.
    import gzip
    with gzip.open("/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz") as f:
        f.read(16)
        fm = np.frombuffer(f.read(40 * 28 * 28), np.uint8).reshape(40, 28, 28, 1)
    np.savez(os.path.join(out, "fashion40.npz"), fm)


def pngs(out):
    from PIL import Image
    rng = np.random.default_rng(5)
    os.makedirs(os.path.join(out, "rgb"))
    os.makedirs(os.path.join(out, "gray"))
    # Smooth images (a random field upsampled) with noise: features that depend on how they are resized.
    for i in range(4):
        base = rng.uniform(0, 255, size=(5, 4, 3))
        image = np.kron(base, np.ones((8, 8, 1)))[:37, :29] + rng.normal(0, 20, size=(37, 29, 3))
        Image.fromarray(np.clip(image, 0, 255).astype(np.uint8)).save(os.path.join(out, "rgb", f"{i}.png"))
    for i in range(3):
        image = rng.integers(0, 256, size=(20, 23), dtype=np.uint8)
        Image.fromarray(image, mode="L").save(os.path.join(out, "gray", f"{i}.png"))


def pytorch_fid_stats(state_dict_path, folder, out, align_corners=False):
    import glob
    import pytorch_fid.inception as fid_inception
    from pytorch_fid.fid_score import calculate_activation_statistics
    state_dict = torch.load(state_dict_path, map_location="cpu", weights_only=True)
    # pytorch-fid builds the network itself; only its download returns the test's weights instead.
    fid_inception.load_state_dict_from_url = lambda *args, **kwargs: state_dict
    model = fid_inception.InceptionV3([fid_inception.InceptionV3.BLOCK_INDEX_BY_DIM[2048]]).eval()
    if align_corners:
        interpolate = torch.nn.functional.interpolate
        fid_inception.F.interpolate = lambda *a, **k: interpolate(*a, **{**k, "align_corners": True})
    files = sorted(glob.glob(os.path.join(folder, "*.png")))
    mu, sigma = calculate_activation_statistics(files, model, batch_size=4, dims=2048, device="cpu", num_workers=0)
    np.savez(out, mu=mu, sigma=sigma)


def stats(net_path, images_path, out):
    net = torch.jit.load(net_path).eval()
    with np.load(images_path) as f:
        images = f[list(f.keys())[0]] if "arr_0" not in f else f["arr_0"]
    x = torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2))).float()
    if x.shape[1] == 1:
        x = x.repeat(1, 3, 1, 1)  # what PIL's convert('RGB') gives pytorch-fid
    with torch.no_grad():
        features = net(x).double().numpy()
    np.savez(out, mu=np.mean(features, axis=0), sigma=np.cov(features, rowvar=False))


def compare(ddpm_path, ref_path, rtol):
    with np.load(ddpm_path) as f:
        mu, sigma = f["mu"], f["sigma"]
    ref_mu, ref_sigma = load_stats(ref_path)
    problems = []
    if mu.dtype != np.float64 or sigma.dtype != np.float64:
        problems.append(f"dtypes {mu.dtype}, {sigma.dtype}, expected float64")
    if mu.shape != ref_mu.shape or sigma.shape != ref_sigma.shape:
        problems.append(f"shapes {mu.shape}, {sigma.shape}, expected {ref_mu.shape}, {ref_sigma.shape}")
    else:
        for name, got, want in (("mu", mu, ref_mu), ("sigma", sigma, ref_sigma)):
            difference = np.abs(got - want).max() / np.abs(want).max()
            print(f"{name}: largest difference {difference:.3g} of the largest |entry|")
            if not difference <= rtol:
                problems.append(f"{name} differs by {difference:.3g} (more than {rtol:g})")
    for p in problems:
        print(p)
    return 1 if problems else 0


def fid(a_path, b_path, value, rtol):
    try:
        from pytorch_fid.fid_score import calculate_frechet_distance
    except ImportError:
        print("fid_reference.py: pytorch-fid is not installed (launch/setup.sh: install_fid_tools)", file=sys.stderr)
        return 2
    mu1, sigma1 = load_stats(a_path)
    mu2, sigma2 = load_stats(b_path)
    reference = calculate_frechet_distance(mu1, sigma1, mu2, sigma2)
    difference = abs(value - reference) / abs(reference)
    print(f"ddpm {value!r}, pytorch-fid {reference!r}: relative difference {difference:.3g}")
    return 0 if difference <= rtol else 1


def main():
    command, args = sys.argv[1], sys.argv[2:]
    try:
        if command == "make":
            make(*args)
            return 0
        if command == "pngs":
            pngs(*args)
            return 0
        if command == "pytorch-fid-stats":
            pytorch_fid_stats(args[0], args[1], args[2], align_corners="--align-corners" in args[3:])
            return 0
        if command == "stats":
            stats(*args)
            return 0
        if command == "compare":
            return compare(args[0], args[1], float(args[2]))
        if command == "fid":
            return fid(args[0], args[1], float(args[2]), float(args[3]))
    except (OSError, KeyError, ValueError, RuntimeError) as e:
        text = str(e)
        print(f"fid_reference.py {command}: {text[:500]}{' ...' if len(text) > 500 else ''}", file=sys.stderr)
        return 2
    print(f"fid_reference.py: unknown command {command}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
