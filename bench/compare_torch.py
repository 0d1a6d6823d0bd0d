#!/usr/bin/python3
"""xgrad side by side with oneDNN and PyTorch, measured in one run on this machine; prints the
markdown tables of bench/RESULTS.md:
  - bn: BatchNorm2d forward-train and forward-train + backward at the shapes of bench/bn_shapes.hpp,
    1 and 2 threads: xgrad's kernels, oneDNN (NCHW and NHWC), PyTorch (NCHW and channels_last),
    and the copy floor (x_copy: time over a copy of the same traffic, in the xgrad binary);
  - steps: a training step of seed-cnn (batch 64, Adam) and of paper-mlp (batch 60, SGD): xgrad's
    build/bench/train_step_bench against the same model, optimizer and threads in PyTorch: once with
    the environment's OPENBLAS_CORETYPE (where it is set, both run the kernels it names; unset, each
    program chooses: Debian's OpenBLAS 0.3.21, which PyTorch's matmuls call, falls back to SSE3
    kernels on CPUs newer than it, where xgrad picks the AVX-512 or AVX2 ones), and, on a CPU with
    AVX-512, once more with both on OPENBLAS_CORETYPE=SkylakeX,
    with the step's GEMM floor from the same binary (its products alone, and one product per layer
    and pass instead) and its FLOP/s;
  - variants: build/bench/bn_variants_bench (BN written other ways), µs and x_copy, var_rel_err;
  - fusions: build/bench/bn_fusion_bench (BN + ReLU, eval folding, BN folded into Conv2d);
  - distributed: build/bench/data_parallel_bench alone and under `mpirun -np 2` (one thread a rank):
    images/s of seed-cnn and paper-mlp steps against one process on 1 and 2 threads, the all-reduce's
    share of a step, SyncBatchNorm's cost over each rank's own BatchNorm, beside PyTorch's
    DistributedDataParallel over gloo on 2 processes of one thread (same models, global batch and
    optimizers; PyTorch's SyncBatchNorm runs on GPUs only);
  - family: build/bench/norm_family_bench (GroupNorm, LayerNorm over (C, H, W), InstanceNorm2d,
    Batch Renorm, Ghost BN) beside nn.GroupNorm, nn.LayerNorm, nn.InstanceNorm2d and, for the two
    BN-based layers, nn.BatchNorm2d over the whole batch, and oneDNN's layer normalization
    (build/bench/onednn_layer_norm_bench) beside LayerNorm, forward-train and forward-train + backward,
    at the same shapes and threads, with x_copy and the ratio to PyTorch.

usage: /usr/bin/python3 bench/compare_torch.py [--build build] [--repetitions 5] [--statistic median|min]
                                               [--part all|bn|steps|distributed|variants|fusions|family]
"""
import argparse
import json
import math
import os
import platform
import socket
import statistics
import subprocess
import time

import torch

from google_benchmark import STATISTICS, alternating, google_benchmark

SHAPES = [(64, 32, 28 * 28), (64, 64, 14 * 14), (32, 64, 56 * 56), (32, 256, 14 * 14),
          (16, 3, 224 * 224), (64, 512, 1), (60, 100, 1), (256, 1024, 1)]
THREADS = [1, 2]
# How repetitions become a figure, for xgrad's binaries and PyTorch alike (google_benchmark.py).
STATISTIC = "median"


def xgrad_name(kind, n, c, s, t):
    return f"BM_{kind}/N:{n}/C:{c}/S:{s}/threads:{t}/real_time"


def onednn_name(kind, n, c, s, t, nhwc):
    return f"BM_onednn_{kind}/N:{n}/C:{c}/S:{s}/threads:{t}/nhwc:{nhwc}/real_time"


def torch_medians(module, n, c, s, threads, channels_last, repetitions):
    """(forward-train, forward+backward) times in µs of the torch module in training mode on an
    (N, C, H, W) input, as Google Benchmark takes them: each repetition times enough iterations for
    0.2 s, STATISTIC over repetitions."""
    torch.set_num_threads(threads)
    module = module.train()
    h, w = image_size(s)
    x = torch.randn(n, c, h, w) + 0.5
    dy = torch.randn(n, c, h, w)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
        dy = dy.contiguous(memory_format=torch.channels_last)

    def forward():
        with torch.no_grad():
            module(x)

    xg = x.clone().requires_grad_(True)

    def forward_backward():
        module(xg).backward(dy)
        xg.grad = None
        for p in module.parameters():
            p.grad = None

    return [time_per_call(forward, repetitions), time_per_call(forward_backward, repetitions)]


def image_size(s):
    """(H, W) of S = H·W: square images, as onednn_bn_bench, else (S, 1)."""
    h = math.isqrt(s) if math.isqrt(s) ** 2 == s else s
    return h, s // h


def time_per_call(step, repetitions, min_seconds=0.2):
    """The time per call in µs, STATISTIC over repetitions, each repetition timing enough calls
    for min_seconds, after one warm-up call: as Google Benchmark takes its figures."""
    step()
    times = []
    for _ in range(repetitions):
        iterations, elapsed = 0, 0.0
        start = time.perf_counter()
        while elapsed < min_seconds:
            step()
            iterations += 1
            elapsed = time.perf_counter() - start
        times.append(elapsed / iterations * 1e6)
    return STATISTICS[STATISTIC](times)


def torch_model(name):
    """The PyTorch twin of experiments/models.cpp's model."""
    nn = torch.nn
    if name == "seed-cnn":
        return nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
            nn.Linear(64 * 7 * 7, 128), nn.BatchNorm1d(128), nn.ReLU(), nn.Linear(128, 10))
    layers, width = [], 784
    for _ in range(3):
        layers += [nn.Linear(width, 100, bias=False), nn.BatchNorm1d(100), nn.Sigmoid()]
        width = 100
    return nn.Sequential(*layers, nn.Linear(width, 10))


STEPS = {"seed-cnn": (64, (1, 28, 28)), "paper-mlp": (60, (784,))}


def torch_step(name, model, images, labels):
    """A training step of `model` (the model `name`, or a wrapper of it) on one batch, with the
    optimizer bench/train_step_bench.cpp gives that model: Adam (lr 1e-3) for seed-cnn, SGD (lr 0.1)
    for paper-mlp."""
    if name == "seed-cnn":
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    else:
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)

    def step():
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(images), labels).backward()
        optimizer.step()

    return step


def torch_train_steps(repetitions):
    """{(model, threads): µs per training step}, as bench/train_step_bench.cpp takes one."""
    torch.manual_seed(0)
    out = {}
    for name, (batch, image) in STEPS.items():
        for threads in THREADS:
            torch.set_num_threads(threads)
            step = torch_step(name, torch_model(name).train(), torch.randn(batch, *image),
                              torch.randint(0, 10, (batch,)))
            for _ in range(3):
                step()
            out[f"{name}/{threads}"] = time_per_call(step, repetitions, 1.0)
    return out


def torch_train_steps_in_child(repetitions, env_extra):
    """torch_train_steps in a fresh interpreter whose environment adds env_extra (OpenBLAS reads
    OPENBLAS_CORETYPE once, when PyTorch loads it)."""
    out = subprocess.run(["/usr/bin/python3", __file__, "--torch-steps-only", "--repetitions", str(repetitions),
                          "--statistic", STATISTIC],
                         check=True, capture_output=True, text=True, env={**os.environ, **env_extra}).stdout
    return json.loads(out)


def has_avx512():
    with open("/proc/cpuinfo") as f:
        return any(line.startswith("flags") and " avx512f" in line for line in f)


def print_train_steps(build, repetitions):
    """One table per choice of OpenBLAS's kernels, xgrad and PyTorch on the same ones: as this
    environment chooses them, then, on a CPU with AVX-512, OpenBLAS's AVX-512 kernels in both."""
    print("### Training step\n")
    print("GEMM floor: the products the step makes, at their own shapes, timed alone (spread over the threads as "
          "if independent); one product per layer: the same FLOPs as one product per layer and pass over the whole "
          "batch. Both through the same gemm and threads in the same binary (bench/gemm_floor.hpp). oneDNN conv: "
          "the step with Conv2d on oneDNN's convolution (--conv-backend onednn), whose products are not sgemm's.\n")
    coretype = os.environ.get("OPENBLAS_CORETYPE")
    print_train_step_table(build, repetitions, {},
                           f"OpenBLAS's kernels as this environment chooses them (OPENBLAS_CORETYPE={coretype})"
                           if coretype else "OpenBLAS's kernels as each program chooses them (OPENBLAS_CORETYPE unset)")
    if has_avx512():
        print_train_step_table(build, repetitions, {"OPENBLAS_CORETYPE": "SkylakeX"},
                               "Both on OpenBLAS's AVX-512 kernels (OPENBLAS_CORETYPE=SkylakeX)")


def print_train_step_table(build, repetitions, env_extra, title):
    # oneDNN's OpenMP threads sleep between its convolutions rather than spin against TBB's (README,
    # the --conv-backend flag); no effect on the own backend, which starts no OpenMP thread.
    xg = google_benchmark(f"{build}/bench/train_step_bench", ".", repetitions, STATISTIC,
                          env={"OMP_WAIT_POLICY": "passive", **env_extra})
    torch_steps = torch_train_steps_in_child(repetitions, env_extra)
    print(f"#### {title}\n")
    print("| model | batch | threads | xgrad (ms) | GEMM floor (ms) | xgrad / floor | one product per layer (ms) "
          "| xgrad GFLOP/s | floor GFLOP/s | PyTorch (ms) | xgrad images/s | PyTorch images/s "
          "| speed-up over PyTorch | xgrad, oneDNN conv (ms) | its speed-up over PyTorch |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for name, (batch, _) in STEPS.items():
        for threads in THREADS:
            suffix = name.replace("-", "_") + f"/threads:{threads}/real_time"
            step, floor = xg["BM_train_step_" + suffix], xg["BM_gemm_floor_" + suffix]
            ours, floor_us, gflop = step["us"], floor["us"], step["flops"] / 1e9
            per_layer = xg["BM_layer_products_" + suffix]["us"]
            theirs = torch_steps[f"{name}/{threads}"]
            # Models with a Conv2d, in builds with oneDNN.
            onednn = xg.get("BM_train_step_" + suffix.replace("/threads", "_onednn/threads"), {"error_occurred": True})
            onednn_cells = ("– | –" if onednn.get("error_occurred")
                            else f"{onednn['us'] / 1e3:.3f} | {theirs / onednn['us']:.2f}")
            print(f"| {name} | {batch} | {threads} | {ours / 1e3:.3f} | {floor_us / 1e3:.3f} | {ours / floor_us:.2f} "
                  f"| {per_layer / 1e3:.3f} | {gflop / ours * 1e6:.1f} | {gflop / floor_us * 1e6:.1f} "
                  f"| {theirs / 1e3:.3f} | {batch / ours * 1e6:.0f} | {batch / theirs * 1e6:.0f} | {theirs / ours:.2f} "
                  f"| {onednn_cells} |")
    print()


# Iterations a repetition of a data-parallel step times, as bench/data_parallel_bench.cpp: every
# rank must take as many steps, or one waits for the other's all-reduce forever.
DDP_ITERATIONS = {"seed-cnn": 30, "paper-mlp": 1000}
MPIRUN = ["mpirun", "--allow-run-as-root", "--timeout", "1800", "-np", "2"]


def torch_ddp_rank(rank, port, repetitions):
    """One of the two ranks of PyTorch's DistributedDataParallel over gloo on loopback, one thread:
    each model's step on the rank's share of the global batch (samples rank, rank + 2, ..., as
    DistributedSampler deals them); rank 0 prints {model: µs per step} as JSON."""
    import torch.distributed as dist
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    torch.set_num_threads(1)
    out = {}
    for name, (batch, image) in STEPS.items():
        torch.manual_seed(0)
        step = torch_step(name, torch.nn.parallel.DistributedDataParallel(torch_model(name).train()),
                          torch.randn(batch, *image)[rank::2], torch.randint(0, 10, (batch,))[rank::2])
        for _ in range(3):
            step()
        times = []
        for _ in range(repetitions):
            dist.barrier()
            start = time.perf_counter()
            for _ in range(DDP_ITERATIONS[name]):
                step()
            times.append((time.perf_counter() - start) / DDP_ITERATIONS[name] * 1e6)
        out[name] = STATISTICS[STATISTIC](times)
    dist.destroy_process_group()
    if rank == 0:
        print(json.dumps(out))


def torch_ddp_steps(repetitions):
    """{model: µs per step} of torch_ddp_rank's two ranks, started as two interpreters."""
    with socket.socket() as s:  # a free port for the rendezvous
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ranks = [subprocess.Popen(["/usr/bin/python3", __file__, "--ddp-rank", str(r), "--ddp-port", str(port),
                               "--repetitions", str(repetitions), "--statistic", STATISTIC],
                              stdout=subprocess.PIPE, text=True) for r in (0, 1)]
    outputs = [p.communicate(timeout=1800)[0] for p in ranks]
    if any(p.returncode != 0 for p in ranks):
        raise RuntimeError("PyTorch DDP over gloo failed")
    return json.loads(outputs[0])


def only(records, prefix):
    """The one record whose benchmark name starts with prefix."""
    [record] = [r for name, r in records.items() if name.startswith(prefix)]
    return record


def print_distributed(build, repetitions):
    binary = f"{build}/bench/data_parallel_bench"
    # One process and two ranks in alternation: their ratio is the figure.
    measured = alternating({"alone": [binary], "two": [*MPIRUN, binary, "--benchmark_filter=threads:1|reduce"]},
                           repetitions, STATISTIC)
    alone, two = measured["alone"], measured["two"]
    ddp = torch_ddp_steps(repetitions)
    torch_alone = torch_train_steps_in_child(repetitions, {})
    print("### Data-parallel training step (images/s)\n")
    print("| model | global batch | BatchNorm | xgrad 1 rank | xgrad 1 process, 2 threads | xgrad 2 ranks "
          "| 2 ranks / 1 rank | all-reduce share of the 2-rank step | PyTorch 1 process | PyTorch DDP gloo, 2 ranks "
          "| xgrad 2 ranks / PyTorch DDP |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for name, (batch, _) in STEPS.items():
        bench = "BM_data_parallel_step_" + name.replace("-", "_")
        reduce_us = only(two, f"BM_reduce_gradients_{name.replace('-', '_')}/")["us"]
        for sync in (0, 1):
            one_rank, two_threads, two_ranks = (only(records, f"{bench}/sync:{sync}/threads:{t}/overlap:1/")["us"]
                                                for records, t in ((alone, 1), (alone, 2), (two, 1)))
            rate = lambda step_us: batch / step_us * 1e6
            torch_cells = (f"{rate(torch_alone[f'{name}/1']):.0f} | {rate(ddp[name]):.0f} | {ddp[name] / two_ranks:.2f}"
                           if not sync else "- | - (SyncBatchNorm on GPUs only) | -")
            print(f"| {name} | {batch} | {'SyncBatchNorm' if sync else 'each rank its own'} | {rate(one_rank):.0f} "
                  f"| {rate(two_threads):.0f} | {rate(two_ranks):.0f} | {one_rank / two_ranks:.2f} "
                  f"| {reduce_us / two_ranks:.3f} | {torch_cells} |")
    print()
    for name in STEPS:
        bench = "BM_data_parallel_step_" + name.replace("-", "_")
        steps = [only(two, f"{bench}/sync:{sync}/threads:1/overlap:1/")["us"] for sync in (0, 1)]
        after = only(two, f"{bench}/sync:0/threads:1/overlap:0/")["us"]
        print(f"{name}, 2 ranks: SyncBatchNorm costs {steps[1] / steps[0] - 1:+.1%} of a step over each rank's own "
              f"BatchNorm; the all-reduce after backward rather than during it, {after / steps[0] - 1:+.1%}.\n")


def print_pivot(binary, title, repetitions, counter=None):
    """One Google Benchmark binary as tables, one per kind of arguments: a row per benchmark (its
    name up to the arguments) and thread count, a column per shape, cells "µs (x_copy)"; with
    `counter`, that counter's first value on the row in a last column."""
    tables = {}  # argument names -> {(benchmark, threads): {shape: record}}
    for name, record in google_benchmark(binary, ".", repetitions, STATISTIC).items():
        parts = [p for p in name.split("/") if p != "real_time"]
        first_arg = next((i for i, part in enumerate(parts) if ":" in part), len(parts))
        args = [p for p in parts[first_arg:] if not p.startswith("threads:")]
        threads = next((p.split(":")[1] for p in parts[first_arg:] if p.startswith("threads:")), "")
        kind = tuple(a.split(":")[0] for a in args)
        tables.setdefault(kind, {}).setdefault(("/".join(parts[:first_arg]), threads), {})["/".join(args)] = record
    for kind, rows in tables.items():
        columns = list(dict.fromkeys(shape for cells in rows.values() for shape in cells))
        print(f"### {title}: {', '.join(kind)}\n")
        print("| benchmark | threads | " + " | ".join(columns) + (f" | {counter} |" if counter else " |"))
        print("|---" * (len(columns) + 2 + bool(counter)) + "|")
        for (bench, threads), cells in rows.items():
            shown = ["" if (r := cells.get(c)) is None else f"{r['us']:.1f}" + (f" ({r['x_copy']:.2f})" if "x_copy" in r else "")
                     for c in columns]
            extra = ""
            if counter:
                value = next((r[counter] for r in cells.values() if counter in r), None)
                extra = " | " + ("" if value is None else f"{value:.2e}")
            print(f"| {bench} | {threads} | " + " | ".join(shown) + extra + " |")
        print()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--build", default="build")
    parser.add_argument("--repetitions", type=int, default=5)
    parser.add_argument("--part", choices=("all", "bn", "steps", "distributed", "variants", "fusions", "family"),
                        default="all",
                        help="one part of the tables, or all of them")
    parser.add_argument("--statistic", choices=tuple(STATISTICS), default="median",
                        help="each figure as the median of its repetitions or their minimum (a noisy shared host)")
    parser.add_argument("--torch-steps-only", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--ddp-rank", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--ddp-port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    global STATISTIC
    STATISTIC = args.statistic
    if args.torch_steps_only:
        print(json.dumps(torch_train_steps(args.repetitions)))
        return
    if args.ddp_rank is not None:
        torch_ddp_rank(args.ddp_rank, args.ddp_port, args.repetitions)
        return

    cpu = subprocess.run(["sh", "-c", "grep -m1 'model name' /proc/cpuinfo | cut -d: -f2"],
                         capture_output=True, text=True).stdout.strip()
    print(f"Machine: {cpu} ({platform.machine()}, {os.cpu_count()} logical CPUs); PyTorch {torch.__version__}; "
          f"{'medians' if STATISTIC == 'median' else 'minima'} of {args.repetitions} repetitions.\n")
    if args.part in ("all", "bn"):
        print_batch_norm(args.build, args.repetitions)
    if args.part in ("all", "steps"):
        print_train_steps(args.build, args.repetitions)
    if args.part in ("all", "distributed"):
        print_distributed(args.build, args.repetitions)
    if args.part in ("all", "variants"):
        print_pivot(f"{args.build}/bench/bn_variants_bench", "BatchNorm variants, µs (x_copy)", args.repetitions,
                    counter="var_rel_err")
    if args.part in ("all", "fusions"):
        print_pivot(f"{args.build}/bench/bn_fusion_bench", "BatchNorm fusions, µs (x_copy)", args.repetitions,
                    counter="max_abs_err")
    if args.part in ("all", "family"):
        print_family(args.build, args.repetitions)


def print_batch_norm(build, repetitions):
    xg = google_benchmark(f"{build}/bench/batch_norm_bench", "BM_(forward_train|forward_backward_train)/",
                          repetitions, STATISTIC)
    dn = google_benchmark(f"{build}/bench/onednn_bn_bench", ".", repetitions, STATISTIC)
    pt = {(n, c, s, t, cl): torch_medians(torch.nn.BatchNorm2d(c), n, c, s, t, cl, repetitions)
          for t in THREADS for n, c, s in SHAPES for cl in (False, True)}

    for title, xkind, dkind, col in (("forward-train", "forward_train", "forward_train", 0),
                                     ("forward-train + backward", "forward_backward_train", "forward_backward", 1)):
        print(f"### BatchNorm2d {title} (µs)\n")
        print("| (N, C, H·W) | threads | xgrad | oneDNN NCHW | oneDNN NHWC | PyTorch NCHW | PyTorch channels_last "
              "| copy floor | xgrad / oneDNN NHWC | xgrad / PyTorch NCHW | xgrad / copy floor |")
        print("|---|---|---|---|---|---|---|---|---|---|---|")
        for t in THREADS:
            for n, c, s in SHAPES:
                record = xg[xgrad_name(xkind, n, c, s, t)]
                ours, floor = record["us"], record["us"] / record["x_copy"]
                nchw, nhwc = (dn[onednn_name(dkind, n, c, s, t, layout)]["us"] for layout in (0, 1))
                torch_nchw, torch_cl = pt[(n, c, s, t, False)][col], pt[(n, c, s, t, True)][col]
                print(f"| ({n}, {c}, {s}) | {t} | {ours:.1f} | {nchw:.1f} | {nhwc:.1f} | {torch_nchw:.1f} | "
                      f"{torch_cl:.1f} | {floor:.1f} | {ours / nhwc:.2f} | {ours / torch_nchw:.2f} | {record['x_copy']:.2f} |")
        print()


def group_count(c):
    """norm_family_bench's GroupNorm groups: 32 where 32 divides C, else C's largest divisor below."""
    return next(g for g in range(32, 0, -1) if c % g == 0)


# norm_family_bench's layers: (name, its extra argument for a shape or None to skip the shape, or
# {} for none, the PyTorch module it is compared with, that module's label).
FAMILY = [
    ("group_norm", lambda n, c, s: {"groups": group_count(c)},
     lambda n, c, s: torch.nn.GroupNorm(group_count(c), c), "nn.GroupNorm"),
    ("layer_norm", lambda n, c, s: {}, lambda n, c, s: torch.nn.LayerNorm([c, *image_size(s)]), "nn.LayerNorm"),
    ("instance_norm", lambda n, c, s: {} if s > 1 else None, lambda n, c, s: torch.nn.InstanceNorm2d(c),
     "nn.InstanceNorm2d"),
    ("batch_renorm", lambda n, c, s: {}, lambda n, c, s: torch.nn.BatchNorm2d(c, momentum=0.01), "nn.BatchNorm2d"),
    ("ghost_batch_norm", lambda n, c, s: {"virtual_batch": n // 4} if n % 4 == 0 else None,
     lambda n, c, s: torch.nn.BatchNorm2d(c), "nn.BatchNorm2d (whole batch)"),
]


def print_family(build, repetitions):
    layers = "|".join(layer for layer, *_ in FAMILY)
    xg = google_benchmark(f"{build}/bench/norm_family_bench", f"^BM_({layers})_", repetitions, STATISTIC)
    # oneDNN 2.6 has layer normalization, not group or instance normalization.
    dn = google_benchmark(f"{build}/bench/onednn_layer_norm_bench", ".", repetitions, STATISTIC)
    rows = []  # (layer, torch label, n, c, s, t, extra, [forward, forward+backward] in torch)
    for layer, extra_of, module_of, label in FAMILY:
        for t in THREADS:
            for n, c, s in SHAPES:
                extra = extra_of(n, c, s)
                if extra is not None:
                    rows.append((layer, label, n, c, s, t, extra,
                                 torch_medians(module_of(n, c, s), n, c, s, t, False, repetitions)))
    for title, phase, col in (("forward-train", "forward_train", 0),
                              ("forward-train + backward", "forward_backward_train", 1)):
        print(f"### Normalization family, {title} (µs)\n")
        print("| layer | PyTorch | (N, C, H·W) | threads | xgrad | PyTorch | oneDNN | copy floor "
              "| xgrad / copy floor | PyTorch / copy floor | xgrad / PyTorch |")
        print("|---|---|---|---|---|---|---|---|---|---|---|")
        for layer, label, n, c, s, t, extra, theirs in rows:
            args = "".join(f"/{k}:{v}" for k, v in extra.items())
            record = xg[f"BM_{layer}_{phase}/N:{n}/C:{c}/S:{s}/threads:{t}{args}/real_time"]
            ours, floor = record["us"], record["us"] / record["x_copy"]
            onednn = dn.get(f"BM_onednn_{layer}_{phase}/N:{n}/C:{c}/S:{s}/threads:{t}/real_time")
            onednn_us = f"{onednn['us']:.1f}" if onednn else ""
            shown = layer + "".join(f" ({k} {v})" for k, v in extra.items())
            print(f"| {shown} | {label} | ({n}, {c}, {s}) | {t} | {ours:.1f} | {theirs[col]:.1f} "
                  f"| {onednn_us} | {floor:.1f} "
                  f"| {record['x_copy']:.2f} | {theirs[col] / floor:.2f} | {ours / theirs[col]:.2f} |")
        print()


if __name__ == "__main__":
    main()
