#!/usr/bin/env python3
"""Writes pytorch-fid's FID Inception as a TorchScript file for `ddpm fid --inception FILE`.

The network is pytorch-fid's own InceptionV3([3], resize_input=True, normalize_input=True, use_fid_inception=True)
(the pool3 block), with one change: the weights come from the file given with --weights instead of
fid_inception_v3()'s download (load_state_dict_from_url). The saved module's forward takes float32 [N, 3, H, W] with
values in [0, 255] and does what pytorch-fid does to a batch of its ImagePathDataset: ToTensor's division by 255,
then InceptionV3's resize_input (bilinear to 299 x 299, align_corners=False) and normalize_input (2x - 1); it returns
the pool3 features [N, 2048] (the 1 x 1 spatial dimensions squeezed, as get_activations does).

    python export_inception.py --weights pt_inception-2015-12-05-6726825d.pth --output inception.pt
    python export_inception.py --random-init --output random_inception.pt   # tests only: meaningless features

Needs the torch venv of launch/setup.sh with pytorch-fid (setup.sh's install_fid_tools). Nothing is downloaded.
"""
import argparse
import hashlib
import sys

import torch
import torch.nn as nn

# pytorch-fid names its weights file after the first 8 hex digits of its sha256 (torch.hub's convention).
EXPECTED_SHA256_PREFIX = "6726825d"
WEIGHTS_NAME = "pt_inception-2015-12-05-6726825d.pth"


def sha256_of(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def build_inception(state_dict, save_state_dict=None):
    """pytorch-fid's InceptionV3 (pool3), built by pytorch-fid's own code; state_dict None keeps the random init.
    save_state_dict: also save the torchvision Inception3's state dict there, in the layout of the published file."""
    import pytorch_fid.inception as fid_inception

    def fid_inception_v3_from_file():
        # pytorch-fid's fid_inception_v3() up to its download: the same torchvision base and patched blocks.
        inception = fid_inception._inception_v3(num_classes=1008, aux_logits=False, weights=None)
        inception.Mixed_5b = fid_inception.FIDInceptionA(192, pool_features=32)
        inception.Mixed_5c = fid_inception.FIDInceptionA(256, pool_features=64)
        inception.Mixed_5d = fid_inception.FIDInceptionA(288, pool_features=64)
        inception.Mixed_6b = fid_inception.FIDInceptionC(768, channels_7x7=128)
        inception.Mixed_6c = fid_inception.FIDInceptionC(768, channels_7x7=160)
        inception.Mixed_6d = fid_inception.FIDInceptionC(768, channels_7x7=160)
        inception.Mixed_6e = fid_inception.FIDInceptionC(768, channels_7x7=192)
        inception.Mixed_7b = fid_inception.FIDInceptionE_1(1280)
        inception.Mixed_7c = fid_inception.FIDInceptionE_2(2048)
        if state_dict is not None:
            inception.load_state_dict(state_dict)  # strict: every key of the published file, nothing else
        if save_state_dict:
            torch.save(inception.state_dict(), save_state_dict)
        return inception

    original = fid_inception.fid_inception_v3
    fid_inception.fid_inception_v3 = fid_inception_v3_from_file  # InceptionV3.__init__ looks it up at call time
    try:
        return fid_inception.InceptionV3([fid_inception.InceptionV3.BLOCK_INDEX_BY_DIM[2048]], resize_input=True,
                                         normalize_input=True, use_fid_inception=True)
    finally:
        fid_inception.fid_inception_v3 = original


class FidFeatures(nn.Module):
    """float32 [N, 3, H, W] in [0, 255] -> pool3 features [N, 2048], as pytorch-fid computes them."""

    def __init__(self, inception):
        super().__init__()
        self.inception = inception

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = images / 255.0  # torchvision's ToTensor on uint8: img.float().div(255)
        features = self.inception(x)[0]  # resize to 299 x 299, 2x - 1 and the blocks happen in there
        return features.squeeze(3).squeeze(2)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--weights", help=f"pytorch-fid's published weights ({WEIGHTS_NAME})")
    source.add_argument("--random-init", action="store_true", help="random weights (tests only)")
    parser.add_argument("--seed", type=int, default=0, help="with --random-init: the torch seed")
    parser.add_argument("--save-state-dict",
                        help="also save the weights here, in the layout of pytorch-fid's file (tests give them to it)")
    parser.add_argument("--output", required=True, help="the TorchScript file to write")
    args = parser.parse_args()

    try:
        import pytorch_fid  # noqa: F401
    except ImportError:
        sys.exit("export_inception.py: pytorch-fid is not installed in this Python (launch/setup.sh installs it "
                 "into the torch venv: install_fid_tools)")

    state_dict = None
    if args.weights:
        digest = sha256_of(args.weights)
        if not digest.startswith(EXPECTED_SHA256_PREFIX):
            print(f"warning: {args.weights} has sha256 {digest[:8]}..., not the {EXPECTED_SHA256_PREFIX}... of "
                  f"pytorch-fid's {WEIGHTS_NAME}: FID numbers from it are not comparable with published ones",
                  file=sys.stderr)
        state_dict = torch.load(args.weights, map_location="cpu", weights_only=True)
    else:
        torch.manual_seed(args.seed)

    inception = build_inception(state_dict, args.save_state_dict).eval()
    features = FidFeatures(inception).eval()
    # Traced, not scripted: InceptionV3.forward breaks out of a loop over a ModuleList, which TorchScript cannot
    # compile. Its path does not depend on the input (the resize is to a fixed 299 x 299), so the trace holds for any
    # N, H and W; checked below on another batch size and image size than the trace's.
    with torch.no_grad():
        module = torch.jit.trace(features, torch.rand(2, 3, 37, 45) * 255.0, check_trace=False)
        probe = torch.rand(3, 3, 64, 48, generator=torch.Generator().manual_seed(1)) * 255.0
        expected, got = features(probe), module(probe)
    if tuple(got.shape) != (3, 2048) or not torch.allclose(got, expected, rtol=1e-4, atol=1e-6 * float(expected.abs().max())):
        sys.exit(f"export_inception.py: the traced module does not reproduce the network on a [3, 3, 64, 48] batch "
                 f"(shape {tuple(got.shape)}, largest difference {float((got - expected).abs().max()):.3g})")
    module.save(args.output)
    print(f"wrote {args.output} ({'random weights' if state_dict is None else args.weights}): "
          "float32 [N, 3, H, W] in [0, 255] -> pool3 features [N, 2048]")


if __name__ == "__main__":
    main()
