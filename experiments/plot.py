#!/usr/bin/python3
"""Draws xgrad plots from their JSON specs (written by experiments/plot.cpp), in one process: its
start and matplotlib's import are most of a small plot's time.

usage: plot.py SPEC.json OUT.png [SPEC.json OUT.png ...]

The spec: {"title", "xlabel", "ylabel", "log_x", "curves": [{"label", "x", "mean", "lo", "hi"}],
optionally "y_range": [lo, hi]}; each curve is a line of mean against x, with a band from lo to hi
when they are not empty. A null value (JSON's spelling of a value that was not finite, such as a
loss along a gradient step that overflowed) leaves a gap.
"""
import json
import math
import os
import sys
import tempfile

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def draw(spec_path, out):
    with open(spec_path) as f:
        spec = json.load(f)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for curve in spec["curves"]:
        values = {k: [math.nan if v is None else v for v in curve[k]] for k in ("x", "mean", "lo", "hi")}
        line, = ax.plot(values["x"], values["mean"], marker="." if len(values["x"]) < 60 else None,
                        label=curve["label"])
        if values["lo"] and values["hi"]:
            ax.fill_between(values["x"], values["lo"], values["hi"], color=line.get_color(), alpha=0.2, linewidth=0)
    if spec.get("log_x"):
        ax.set_xscale("log")
    if spec.get("y_range"):
        ax.set_ylim(*spec["y_range"])
    ax.set_xlabel(spec["xlabel"])
    ax.set_ylabel(spec["ylabel"])
    ax.set_title(spec["title"], fontsize="medium", wrap=True)
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    fig.tight_layout()
    # Written beside the target and renamed over it, so a reader never sees half a PNG.
    fd, tmp = tempfile.mkstemp(suffix=".png", dir=os.path.dirname(os.path.abspath(out)))
    os.close(fd)
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    os.replace(tmp, out)


def main():
    pairs = sys.argv[1:]
    if not pairs or len(pairs) % 2:
        sys.exit(__doc__)
    for spec_path, out in zip(pairs[::2], pairs[1::2]):
        draw(spec_path, out)


if __name__ == "__main__":
    main()
