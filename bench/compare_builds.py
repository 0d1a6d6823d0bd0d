#!/usr/bin/python3
"""Two builds of xgrad's benchmark binaries side by side, measured in one run: the no-regression
check of a kernel rewrite (bench/RESULTS.md). For every benchmark, the time and x_copy (the median
or the minimum of the repetitions, --statistic) of the old and of the new build, and new over old of the time, with the larger of the two builds'
coefficients of variation of the time over the repetitions. The time is what the ratio compares:
old and new run each shape in alternation, under the same load, whereas x_copy depends on how each
build measures its floor (older builds measured it once per process).

The benchmarks run one set of arguments (a shape and a thread count) at a time, old binary and new
binary in turn, the first of the two alternating, so that both meet the same load; each process
measures its own copy floor (bench/copy_floor.hpp), which x_copy divides by.

usage: /usr/bin/python3 bench/compare_builds.py OLD_BUILD NEW_BUILD [--repetitions 5] [--statistic median|min]
                                                [--binaries batch_norm_bench bn_fusion_bench]
                                                [--arguments REGEX]
"""
import argparse
import datetime
import json
import os
import re
import subprocess

from google_benchmark import STATISTICS, google_benchmark


def provenance(build):
    """The commit a build directory was configured from, with "-dirty" for uncommitted changes."""
    with open(os.path.join(build, "meson-info", "meson-info.json")) as f:
        source = json.load(f)["directories"]["source"]
    git = ["git", "-C", source]
    commit = subprocess.run(git + ["rev-parse", "--short", "HEAD"], check=True, capture_output=True, text=True)
    dirty = subprocess.run(git + ["status", "--porcelain", "--untracked-files=no"], check=True, capture_output=True,
                           text=True).stdout.strip()
    return commit.stdout.strip() + ("-dirty" if dirty else "")


def argument_sets(binary):
    """The binary's benchmarks grouped by their arguments ("N:64/C:32/S:784/threads:1"), in order."""
    names = subprocess.run([binary, "--benchmark_list_tests"], check=True, capture_output=True, text=True).stdout
    groups = {}
    for name in names.split():
        parts = [p for p in name.split("/") if p != "real_time"]
        first_arg = next((i for i, part in enumerate(parts) if ":" in part), len(parts))
        groups.setdefault("/".join(parts[first_arg:]), []).append(name)
    return groups


def measure(old_binary, new_binary, repetitions, statistic, selected):
    """{name: (old record, new record)} for the benchmarks of the new binary whose arguments match
    the regular expression `selected`."""
    pairs = {}
    chosen = [arguments for arguments in argument_sets(new_binary) if re.search(selected, arguments)]
    for k, arguments in enumerate(chosen):
        pattern = f"/{arguments}/"
        order = [("old", old_binary), ("new", new_binary)]
        runs = dict((which, google_benchmark(binary, pattern, repetitions, statistic))
                    for which, binary in (order if k % 2 == 0 else order[::-1]))
        for name, record in runs["new"].items():
            pairs[name] = (runs["old"].get(name), record)
    return pairs


def cv(record, key):
    return record.get("cv", {}).get(key, float("nan"))


def print_table(binary_name, pairs):
    print(f"### {binary_name}\n")
    print("| benchmark | old µs | new µs | old x_copy | new x_copy | new / old | cv (max of both) |")
    print("|---|---|---|---|---|---|---|")
    for name, (old, new) in pairs.items():
        shown = name.removesuffix("/real_time")
        if old is None:
            print(f"| {shown} | | {new['us']:.1f} | | | | |")
            continue
        ratio = new["us"] / old["us"]
        spread = max(cv(old, "real_time"), cv(new, "real_time"))
        copies = (f"{old['x_copy']:.2f} | {new['x_copy']:.2f}" if "x_copy" in new and "x_copy" in old else " | ")
        flag = " **slower**" if ratio > 1.05 else ""
        print(f"| {shown} | {old['us']:.1f} | {new['us']:.1f} | {copies} | {ratio:.3f}{flag} | {spread:.1%} |")
    print()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("old_build")
    parser.add_argument("new_build")
    parser.add_argument("--repetitions", type=int, default=5)
    parser.add_argument("--statistic", choices=tuple(STATISTICS), default="median",
                        help="each figure as the median of its repetitions or their minimum (a noisy shared host)")
    parser.add_argument("--binaries", nargs="+", default=["batch_norm_bench", "bn_fusion_bench"])
    parser.add_argument("--arguments", default="", help="only the argument sets this regular expression finds")
    args = parser.parse_args()

    with open("/proc/cpuinfo") as f:
        cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "unknown CPU")
    print(f"{datetime.date.today()}, {cpu} ({os.cpu_count()} logical CPUs): old {provenance(args.old_build)} "
          f"({args.old_build}), new {provenance(args.new_build)} ({args.new_build}); {args.statistic} of {args.repetitions} "
          f"repetitions; new / old of the time.\n")
    for binary in args.binaries:
        pairs = measure(os.path.join(args.old_build, "bench", binary), os.path.join(args.new_build, "bench", binary),
                        args.repetitions, args.statistic, args.arguments)
        print_table(binary, pairs)


if __name__ == "__main__":
    main()
