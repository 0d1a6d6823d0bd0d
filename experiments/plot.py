#!/usr/bin/python3
"""Draws one xgrad plot from its JSON spec (written by experiments/plot.cpp).

usage: plot.py SPEC.json OUT.png

The spec: {"title", "xlabel", "ylabel", "log_x", "curves": [{"label", "x", "mean", "lo", "hi"}],
optionally "y_range": [lo, hi]}; each curve is a line of mean against x, with a band from lo to hi
when they are not empty.
"""
import json
import os
import sys
import tempfile

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    with open(sys.argv[1]) as f:
        spec = json.load(f)
    out = sys.argv[2]

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for curve in spec["curves"]:
        line, = ax.plot(curve["x"], curve["mean"], marker="." if len(curve["x"]) < 60 else None,
                        label=curve["label"])
        if curve["lo"] and curve["hi"]:
            ax.fill_between(curve["x"], curve["lo"], curve["hi"], color=line.get_color(), alpha=0.2, linewidth=0)
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
    os.replace(tmp, out)


if __name__ == "__main__":
    main()
