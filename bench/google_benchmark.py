"""Running a Google Benchmark binary from the comparison scripts (compare_torch.py,
compare_builds.py): its records by benchmark name, reduced over the repetitions."""
import json
import statistics
import subprocess

# How the repetitions of a benchmark become its figure: the median, or the minimum. On a shared
# host, other tenants' memory traffic only ever slows a memory-bound kernel down, in bursts that a
# median of a few repetitions does not always outvote; the minimum is then the steadier estimate of
# what the code itself costs.
STATISTICS = {"median": statistics.median_low, "min": min}


def google_benchmark(binary, pattern, repetitions, statistic="median", launcher=()):
    """Records by benchmark name from a Google Benchmark binary's JSON output, with the time in µs
    as "us" and the counters of the repetition whose time is `statistic` of the repetitions' times
    (x_copy, though, as that time over the same statistic of the floors), and the coefficient of
    variation of the time and of each counter as "cv". `launcher` goes before the binary (mpirun and
    its flags)."""
    # Repetitions interleaved over the run, so that a burst of load from elsewhere on the machine
    # spoils one repetition of several benchmarks rather than every repetition of one: in a random
    # order, or under a launcher (whose ranks would each draw their own order) as one run of every
    # benchmark after the other.
    command = [*launcher, binary, f"--benchmark_filter={pattern}", "--benchmark_format=json"]
    if launcher:
        commands = [command] * repetitions
    else:
        commands = [command + [f"--benchmark_repetitions={repetitions}", "--benchmark_enable_random_interleaving=true"]]
    to_us = {"ns": 1e-3, "us": 1.0, "ms": 1e3, "s": 1e6}
    runs = {}
    for c in commands:
        out = subprocess.run(c, check=True, capture_output=True, text=True).stdout
        for b in json.loads(out)["benchmarks"]:
            if b["run_type"] == "iteration":
                runs.setdefault(b["run_name"], []).append({**b, "us": b["real_time"] * to_us[b["time_unit"]]})
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
