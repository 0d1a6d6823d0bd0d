#!/usr/bin/python3
"""BatchNorm2d side by side: xgrad's kernels, oneDNN (NCHW and NHWC) and PyTorch (NCHW and
channels_last), forward-train and forward-train + backward, at the shapes of bench/bn_shapes.hpp
with 1 and 2 threads, measured in one run on this machine. Prints markdown tables of medians (µs)
and of xgrad's ratio to each reference.

usage: /usr/bin/python3 bench/compare_torch.py [--build build] [--repetitions 5]
"""
import argparse
import json
import math
import os
import platform
import statistics
import subprocess
import time

import torch

SHAPES = [(64, 32, 28 * 28), (64, 64, 14 * 14), (32, 64, 56 * 56), (32, 256, 14 * 14),
          (16, 3, 224 * 224), (64, 512, 1), (60, 100, 1), (256, 1024, 1)]
THREADS = [1, 2]


def google_benchmark(binary, pattern, repetitions):
    """Medians in µs by benchmark name, from a Google Benchmark binary's JSON output."""
    out = subprocess.run([binary, f"--benchmark_filter={pattern}", "--benchmark_format=json",
                          f"--benchmark_repetitions={repetitions}", "--benchmark_report_aggregates_only=true"],
                         check=True, capture_output=True, text=True).stdout
    medians = {}
    for b in json.loads(out)["benchmarks"]:
        if b.get("aggregate_name") == "median":
            assert b["time_unit"] == "us", b
            medians[b["run_name"]] = b["real_time"]
    return medians


def xgrad_name(kind, n, c, s, t):
    return f"BM_{kind}/N:{n}/C:{c}/S:{s}/threads:{t}/real_time"


def onednn_name(kind, n, c, s, t, nhwc):
    return f"BM_onednn_{kind}/N:{n}/C:{c}/S:{s}/threads:{t}/nhwc:{nhwc}/real_time"


def torch_medians(n, c, s, threads, channels_last, repetitions):
    """(forward-train, forward+backward) medians in µs of nn.BatchNorm2d, as Google Benchmark
    takes them: each repetition times enough iterations for 0.2 s, the median over repetitions."""
    torch.set_num_threads(threads)
    bn = torch.nn.BatchNorm2d(c).train()
    h = math.isqrt(s) if math.isqrt(s) ** 2 == s else s  # square images, as onednn_bn_bench
    x = torch.randn(n, c, h, s // h) + 0.5
    dy = torch.randn(n, c, h, s // h)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
        dy = dy.contiguous(memory_format=torch.channels_last)

    def forward():
        with torch.no_grad():
            bn(x)

    xg = x.clone().requires_grad_(True)

    def forward_backward():
        bn(xg).backward(dy)
        xg.grad = None
        bn.weight.grad = None
        bn.bias.grad = None

    results = []
    for step in (forward, forward_backward):
        step()  # warm-up
        times = []
        for _ in range(repetitions):
            iterations, elapsed = 0, 0.0
            start = time.perf_counter()
            while elapsed < 0.2:
                step()
                iterations += 1
                elapsed = time.perf_counter() - start
            times.append(elapsed / iterations * 1e6)
        results.append(statistics.median(times))
    return results


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--build", default="build")
    parser.add_argument("--repetitions", type=int, default=5)
    args = parser.parse_args()

    xg = google_benchmark(f"{args.build}/bench/batch_norm_bench", "BM_(copy|forward_train|forward_backward_train)/",
                          args.repetitions)
    dn = google_benchmark(f"{args.build}/bench/onednn_bn_bench", ".", args.repetitions)
    pt = {(n, c, s, t, cl): torch_medians(n, c, s, t, cl, args.repetitions)
          for t in THREADS for n, c, s in SHAPES for cl in (False, True)}

    cpu = subprocess.run(["sh", "-c", "grep -m1 'model name' /proc/cpuinfo | cut -d: -f2"],
                         capture_output=True, text=True).stdout.strip()
    print(f"Machine: {cpu} ({platform.machine()}, {os.cpu_count()} logical CPUs); PyTorch {torch.__version__}; "
          f"medians of {args.repetitions} repetitions, µs.\n")
    for title, xkind, dkind, col in (("forward-train", "forward_train", "forward_train", 0),
                                     ("forward-train + backward", "forward_backward_train", "forward_backward", 1)):
        print(f"### BatchNorm2d {title}\n")
        print("| (N, C, H·W) | threads | xgrad | oneDNN NCHW | oneDNN NHWC | PyTorch NCHW | PyTorch channels_last "
              "| copy | xgrad / oneDNN NHWC | xgrad / PyTorch NCHW | xgrad / copy |")
        print("|---|---|---|---|---|---|---|---|---|---|---|")
        for t in THREADS:
            for n, c, s in SHAPES:
                ours = xg[xgrad_name(xkind, n, c, s, t)]
                copy = xg[xgrad_name("copy", n, c, s, t)]
                nchw, nhwc = (dn[onednn_name(dkind, n, c, s, t, layout)] for layout in (0, 1))
                torch_nchw, torch_cl = pt[(n, c, s, t, False)][col], pt[(n, c, s, t, True)][col]
                print(f"| ({n}, {c}, {s}) | {t} | {ours:.1f} | {nchw:.1f} | {nhwc:.1f} | {torch_nchw:.1f} | "
                      f"{torch_cl:.1f} | {copy:.1f} | {ours / nhwc:.2f} | {ours / torch_nchw:.2f} | {ours / copy:.2f} |")
        print()


if __name__ == "__main__":
    main()
