"""Running Google Benchmark binaries from the comparison scripts (compare_torch.py,
compare_builds.py): their records by benchmark name, reduced over the repetitions."""
import json
import os
import statistics
import subprocess

# How the repetitions of a benchmark become its figure: the median, or the minimum. On a shared
# host, other tenants' memory traffic only ever slows a memory-bound kernel down, in bursts that a
# median of a few repetitions does not always outvote; the minimum is then the steadier estimate of
# what the code itself costs.
STATISTICS = {"median": statistics.median_low, "min": min}


def google_benchmark(binary, pattern, repetitions, statistic="median", env=None):
    """Records by benchmark name from a Google Benchmark binary's JSON output, with the time in µs
    as "us" and the counters of the repetition whose time is `statistic` of the repetitions' times
    (x_copy, though, as that time over the same statistic of the floors), and the coefficient of
    variation of the time and of each counter as "cv". `env`: variables added to the binary's
    environment."""
    # Repetitions interleaved at random over the run, so that a burst of load from elsewhere on the
    # machine spoils one repetition of several benchmarks rather than every repetition of one.
    return reduce_repetitions(iterations_of([binary, f"--benchmark_filter={pattern}", "--benchmark_format=json",
                                             f"--benchmark_repetitions={repetitions}",
                                             "--benchmark_enable_random_interleaving=true"], env), statistic)


def alternating(commands, repetitions, statistic="median"):
    """{key: records as google_benchmark's} for commands {key: argv} that run Google Benchmark
    binaries (under a launcher such as mpirun, whose ranks must not draw an order of their own):
    each repetition runs every command once, one after the other, so that a burst of load spreads
    over the commands rather than spoiling one of them, whose figures are compared."""
    runs = {key: {} for key in commands}
    for _ in range(repetitions):
        for key, command in commands.items():
            for name, reps in iterations_of([*command, "--benchmark_format=json"]).items():
                runs[key].setdefault(name, []).extend(reps)
    return {key: reduce_repetitions(r, statistic) for key, r in runs.items()}


def iterations_of(command, env=None):
    """The iteration records of one run of `command` (its environment with `env` added), by benchmark
    name, with the time in µs as "us"."""
    to_us = {"ns": 1e-3, "us": 1.0, "ms": 1e3, "s": 1e6}
    # The test command builds no benchmark; say so rather than fail with a stack.
    missing = [arg for arg in command if arg.endswith("_bench") and not os.path.exists(arg)]
    if missing:
        raise SystemExit(f"{missing[0]} does not exist: build the benchmarks first "
                         "(bash setup.sh build, or ninja -C build; the oneDNN ones need libdnnl-dev)")
    runs = {}
    out = subprocess.run(command, check=True, capture_output=True, text=True,
                         env={**os.environ, **(env or {})}).stdout
    for b in json.loads(out)["benchmarks"]:
        if b["run_type"] == "iteration":
            runs.setdefault(b["run_name"], []).append({**b, "us": b["real_time"] * to_us[b["time_unit"]]})
    return runs


def reduce_repetitions(runs, statistic):
    """A record per benchmark from its repetitions' records (google_benchmark says how)."""
    reduce = STATISTICS[statistic]
    records = {}
    for name, reps in runs.items():
        # The repetition whose time is the statistic (median_low: one of them), with its own rates,
        # so that bytes_per_second and the time agree.
        us = reduce([r["us"] for r in reps])
        record = dict(next(r for r in reps if r["us"] == us))
        numeric = [k for k, v in record.items() if isinstance(v, (int, float)) and not isinstance(v, bool)]
        record["cv"] = {}
        for key in numeric:
            values = [r[key] for r in reps]
            mean = statistics.fmean(values)
            record["cv"][key] = statistics.pstdev(values) / mean if len(values) > 1 and mean else 0.0
        record["cv"]["real_time"] = record["cv"]["us"]
        if "x_copy" in record:
            # The time over the floor, each reduced on its own: the ratio's own minimum would pick a
            # repetition whose floor, not whose kernel, met the load.
            record["x_copy"] = us / reduce([r["us"] / r["x_copy"] for r in reps])
        records[name] = record
    return records
