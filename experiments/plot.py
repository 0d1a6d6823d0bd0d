#!/usr/bin/python3
"""Plots test accuracy against training steps from xgrad metrics.csv files.

usage: plot.py --out FILE.png [--title T] LABEL=path/to/metrics.csv ...
"""
import argparse
import csv
import os
import tempfile

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def read_metrics(path):
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    return [int(r["step"]) for r in rows], [float(r["test_acc"]) for r in rows]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True)
    parser.add_argument("--title", default="")
    parser.add_argument("series", nargs="+", help="LABEL=metrics.csv")
    args = parser.parse_args()

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for item in args.series:
        label, _, path = item.partition("=")
        steps, acc = read_metrics(path)
        ax.plot(steps, acc, marker=".", label=label)
    ax.set_xlabel("training step")
    ax.set_ylabel("test accuracy")
    ax.set_title(args.title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    # Written beside the target and renamed over it, so a reader never sees half a PNG.
    fd, tmp = tempfile.mkstemp(suffix=".png", dir=os.path.dirname(os.path.abspath(args.out)))
    os.close(fd)
    fig.savefig(tmp, dpi=120)
    os.replace(tmp, args.out)


if __name__ == "__main__":
    main()
