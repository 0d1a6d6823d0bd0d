#!/usr/bin/python3
"""Evaluates an xgrad checkpoint of `seed-cnn` with PyTorch: the seed document's CNN (fc1
corrected to 64*7*7 inputs; without its BN layers when the checkpoint has none) is loaded from the
.npz with load_state_dict(strict=True) and run in eval mode on the Fashion-MNIST test set, so its
accuracy can be compared with `xgrad eval`'s.

    /usr/bin/python3 experiments/torch_eval.py --checkpoint results/run/checkpoint.npz
"""
import argparse
import gzip
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


class SeedCNN(nn.Module):
    def __init__(self, batch_norm: bool):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, kernel_size=3, padding=1)
        self.conv2 = nn.Conv2d(32, 64, kernel_size=3, padding=1)
        self.fc1 = nn.Linear(64 * 7 * 7, 128)
        self.fc2 = nn.Linear(128, 10)
        if batch_norm:
            self.bn1 = nn.BatchNorm2d(32)
            self.bn2 = nn.BatchNorm2d(64)
            self.bn_fc1 = nn.BatchNorm1d(128)
        else:
            self.bn1 = self.bn2 = self.bn_fc1 = nn.Identity()

    def forward(self, x):
        x = torch.max_pool2d(torch.relu(self.bn1(self.conv1(x))), kernel_size=2, stride=2)
        x = torch.max_pool2d(torch.relu(self.bn2(self.conv2(x))), kernel_size=2, stride=2)
        x = x.view(x.size(0), -1)
        x = torch.relu(self.bn_fc1(self.fc1(x)))
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


def load_model(checkpoint: Path) -> SeedCNN:
    try:
        with np.load(checkpoint) as npz:
            state = {k: torch.from_numpy(npz[k]) for k in npz.files if not k.startswith(RESUME_PREFIXES)}
    except (OSError, ValueError, zipfile.BadZipFile) as e:
        sys.exit(f"{checkpoint}: cannot read the checkpoint: {e}")
    model = SeedCNN(batch_norm=any(k.startswith("bn1.") for k in state))
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        sys.exit(f"{checkpoint}: not a seed-cnn checkpoint: {e}")
    return model.eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", type=Path, required=True, help="checkpoint.npz written by xgrad")
    parser.add_argument("--data-dir", type=Path, default=Path("/usr/share/datasets/fashion-mnist"),
                        help="directory with t10k-images-idx3-ubyte.gz and t10k-labels-idx1-ubyte.gz")
    parser.add_argument("--batch", type=int, default=1000, help="evaluation batch size")
    args = parser.parse_args()
    if args.batch < 1:
        parser.error("--batch must be positive")
    for path in (args.checkpoint, args.data_dir):
        if not path.exists():
            sys.exit(f"{path}: no such file or directory")

    model = load_model(args.checkpoint)
    x, y = load_test_set(args.data_dir)
    correct = 0
    with torch.no_grad():
        for i in range(0, len(y), args.batch):
            correct += (model(x[i:i + args.batch]).argmax(dim=1) == y[i:i + args.batch]).sum().item()
    print(f"test accuracy: {correct / len(y):.4f}")


if __name__ == "__main__":
    main()
