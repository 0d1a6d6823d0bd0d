#!/usr/bin/python3
"""Evaluates an xgrad checkpoint of `seed-cnn` with PyTorch: the seed document's CNN (fc1
corrected to 64*7*7 inputs) with the normalization the run used is loaded from the .npz with
load_state_dict(strict=True) and run in eval mode on the Fashion-MNIST test set (or its first
--eval-samples images), so its accuracy can be compared with `xgrad eval`'s.

The model is the one config.json beside the checkpoint records (a run directory); elsewhere,
--norm and --norm-groups say it (--norm defaults to batch when the checkpoint has bn1.running_mean,
none when it has no bn1 key). Each norm is torch's layer under xgrad's state_dict names: BatchNorm
for batch, batch-renorm and ghost (whose eval is BatchNorm's, with the running statistics),
GroupNorm, LayerNorm over (C, H, W) after a convolution, InstanceNorm2d(affine=True), and timm's
FilterResponseNormTlu2d for frn, whose TLU takes the place of the ReLU.

    /usr/bin/python3 experiments/torch_eval.py --checkpoint results/run/checkpoint.npz
"""
import argparse
import ctypes
import gzip
import json
import sys
import zipfile
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

# Fashion-MNIST's pixel mean and standard deviation, as experiments/dataset.cpp normalizes.
MEAN, STD = 0.2860, 0.3530
# Keys under these prefixes hold xgrad's optimizer and trainer state, which torch does not load.
RESUME_PREFIXES = ("optimizer/", "trainer/")
NORMS = ("batch", "batch-renorm", "ghost", "group", "layer", "instance", "frn", "none")
# The seed CNN's norm positions, as experiments/models.cpp names them, with what one sample is there.
POSITIONS = (("bn1", (32, 28, 28)), ("bn2", (64, 14, 14)), ("bn_fc1", (128,)))


class FilterResponseNormTlu2d(nn.Module):
    """timm's FilterResponseNormTlu2d (Singh & Krishnan 2019) with xgrad's eps, the paper's 1e-6:
    y = weight * x / sqrt(mean over (H, W) of x^2 + eps) + bias, then max(y, tau)."""

    def __init__(self, num_features: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(num_features))
        self.bias = nn.Parameter(torch.zeros(num_features))
        self.tau = nn.Parameter(torch.zeros(num_features))

    def forward(self, x):
        shape = (1, -1, 1, 1)
        nu2 = x.square().mean(dim=(2, 3), keepdim=True)
        y = x * torch.rsqrt(nu2 + self.eps) * self.weight.view(shape) + self.bias.view(shape)
        return torch.maximum(y, self.tau.view(shape))


def norm_layer(norm: str, groups: int, shape: tuple) -> nn.Module:
    """The layer xgrad's make_model puts where one sample has `shape`: (C,) after a Linear, (C, H, W)
    after a Conv2d; Identity where it puts none."""
    channels, spatial = shape[0], len(shape) == 3
    if norm in ("batch", "batch-renorm", "ghost"):
        return (nn.BatchNorm2d if spatial else nn.BatchNorm1d)(channels)
    if norm == "group":
        return nn.GroupNorm(groups, channels)
    if norm == "layer":
        return nn.LayerNorm(list(shape))
    if norm == "instance" and spatial:
        return nn.InstanceNorm2d(channels, affine=True)
    if norm == "frn" and spatial:
        return FilterResponseNormTlu2d(channels)
    return nn.Identity()  # none, and instance and frn after a Linear


class SeedCNN(nn.Module):
    def __init__(self, norm: str, groups: int):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, kernel_size=3, padding=1)
        self.conv2 = nn.Conv2d(32, 64, kernel_size=3, padding=1)
        self.fc1 = nn.Linear(64 * 7 * 7, 128)
        self.fc2 = nn.Linear(128, 10)
        for name, shape in POSITIONS:
            setattr(self, name, norm_layer(norm, groups, shape))
        # FRN's layer ends in its TLU: no ReLU after it.
        self.act1, self.act2, self.act3 = (
            nn.Identity() if isinstance(getattr(self, name), FilterResponseNormTlu2d) else nn.ReLU()
            for name, _ in POSITIONS)

    def forward(self, x):
        x = torch.max_pool2d(self.act1(self.bn1(self.conv1(x))), kernel_size=2, stride=2)
        x = torch.max_pool2d(self.act2(self.bn2(self.conv2(x))), kernel_size=2, stride=2)
        x = x.view(x.size(0), -1)
        x = self.act3(self.bn_fc1(self.fc1(x)))
        return self.fc2(x)


def read_idx(path: Path, magic: int, rank: int) -> np.ndarray:
    """An IDX file of unsigned bytes (gzip-compressed), as numpy: magic, then `rank` big-endian sizes."""
    with gzip.open(path, "rb") as f:
        data = f.read()
    header = 4 * (1 + rank)
    if len(data) < header:
        sys.exit(f"{path}: truncated: {len(data)} bytes, the IDX header needs {header}")
    found = int.from_bytes(data[0:4], "big")
    if found != magic:
        sys.exit(f"{path}: bad magic number {found} at byte 0, expected {magic}")
    shape = tuple(int.from_bytes(data[4 * (1 + i):4 * (2 + i)], "big") for i in range(rank))
    if len(data) - header != int(np.prod(shape)):
        sys.exit(f"{path}: {len(data) - header} bytes of data after the header, shape {shape} needs {int(np.prod(shape))}")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape)


def load_test_set(data_dir: Path):
    images = read_idx(data_dir / "t10k-images-idx3-ubyte.gz", 2051, 3)
    labels = read_idx(data_dir / "t10k-labels-idx1-ubyte.gz", 2049, 1)
    if len(images) != len(labels):
        sys.exit(f"{data_dir}: {len(images)} test images but {len(labels)} labels")
    x = (images.astype(np.float32) / 255.0 - MEAN) / STD
    return torch.from_numpy(x[:, None, :, :]), torch.from_numpy(labels.astype(np.int64))


def read_state(checkpoint: Path) -> dict:
    try:
        with np.load(checkpoint) as npz:
            return {k: torch.from_numpy(npz[k]) for k in npz.files if not k.startswith(RESUME_PREFIXES)}
    except (OSError, ValueError, zipfile.BadZipFile) as e:
        sys.exit(f"{checkpoint}: cannot read the checkpoint: {e}")


def model_choice(checkpoint: Path, state: dict, norm, groups) -> tuple:
    """(norm, groups) from config.json beside the checkpoint, which the flags given must agree
    with, or from the flags."""
    config_path = checkpoint.parent / "config.json"
    if not config_path.exists():
        if norm is None:
            norm = "batch" if "bn1.running_mean" in state else "none"
        if groups is not None and norm != "group":
            sys.exit(f"--norm-groups applies to --norm group only, not to --norm {norm}")
        return norm, 32 if groups is None else groups
    try:
        config = json.loads(config_path.read_text())
    except (OSError, ValueError) as e:
        sys.exit(f"{config_path}: cannot read the run's configuration: {e}")
    if "norm" not in config and isinstance(config.get("bn"), bool):  # recorded before --norm
        config["norm"] = "batch" if config["bn"] else "none"
    for key in ("model", "norm"):
        if key not in config:
            sys.exit(f"{config_path}: no key '{key}'")
    if config["model"] != "seed-cnn":
        sys.exit(f"{config_path}: a {config['model']} run; this script builds seed-cnn only")
    recorded = (config["norm"], config.get("norm_groups"))
    for flag, given, value in (("--norm", norm, recorded[0]), ("--norm-groups", groups, recorded[1])):
        if given is not None and given != value:
            sys.exit(f"{flag} {given} contradicts {config_path}, which records {json.dumps(value)}")
    return recorded[0], recorded[1] or 32


def load_model(checkpoint: Path, norm, groups) -> SeedCNN:
    state = read_state(checkpoint)
    norm, groups = model_choice(checkpoint, state, norm, groups)
    if norm not in NORMS:
        sys.exit(f"{checkpoint}: unknown normalization '{norm}' (known: {', '.join(NORMS)})")
    model = SeedCNN(norm, groups)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        sys.exit(f"{checkpoint}: not a seed-cnn checkpoint with --norm {norm}: {e}")
    return model.eval()


def retain_freed_memory() -> None:
    """As xgrad's retain_freed_memory: large blocks from the heap, kept after they are freed.
    Otherwise every batch's activations are mmap'd afresh and each 4 KiB costs a page fault:
    12 s instead of 6.6 s for the seed CNN over the test set, half of it in the kernel."""
    m_trim_threshold, m_mmap_max = -1, -4  # glibc's <malloc.h>
    try:
        libc = ctypes.CDLL(None)
        kept = libc.mallopt(m_mmap_max, 0) == 1 and libc.mallopt(m_trim_threshold, 1 << 30) == 1
    except (AttributeError, OSError, TypeError):
        kept = False
    if not kept:  # only slower: say so and go on
        print("torch_eval.py: mallopt unavailable or refused; freed memory goes back to the system",
              file=sys.stderr)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", type=Path, required=True, help="checkpoint.npz written by xgrad")
    parser.add_argument("--norm", choices=NORMS, help="the run's --norm, where no config.json is beside the checkpoint")
    parser.add_argument("--norm-groups", type=int, help="the run's --norm-groups (GroupNorm), likewise; default 32")
    parser.add_argument("--data-dir", type=Path, default=Path("/usr/share/datasets/fashion-mnist"),
                        help="directory with t10k-images-idx3-ubyte.gz and t10k-labels-idx1-ubyte.gz")
    parser.add_argument("--batch", type=int, default=1000, help="evaluation batch size")
    parser.add_argument("--eval-samples", type=int, default=0,
                        help="evaluate on the first N test images only, 0 for all (as xgrad eval's flag)")
    args = parser.parse_args()
    if args.batch < 1:
        parser.error("--batch must be positive")
    if args.eval_samples < 0:
        parser.error("--eval-samples must be 0 (all) or positive")
    if args.norm_groups is not None and args.norm_groups < 1:
        parser.error("--norm-groups must be positive")
    for path in (args.checkpoint, args.data_dir):
        if not path.exists():
            sys.exit(f"{path}: no such file or directory")

    retain_freed_memory()
    model = load_model(args.checkpoint, args.norm, args.norm_groups)
    x, y = load_test_set(args.data_dir)
    if args.eval_samples:
        x, y = x[:args.eval_samples], y[:args.eval_samples]
    correct = 0
    with torch.no_grad():
        for i in range(0, len(y), args.batch):
            correct += (model(x[i:i + args.batch]).argmax(dim=1) == y[i:i + args.batch]).sum().item()
    print(f"test accuracy: {correct / len(y):.4f}")


if __name__ == "__main__":
    main()
