"""Running a Google Benchmark binary from the comparison scripts (compare_torch.py,
compare_builds.py): its median records by benchmark name."""
import json
import subprocess


def google_benchmark(binary, pattern, repetitions):
    """Median records by benchmark name, from a Google Benchmark binary's JSON output, with the
    time in µs as "us" (counters such as x_copy as the binary reported them, medians over the
    repetitions as the time is) and, with several
    repetitions, the coefficient of variation of the time and of each counter as "cv"."""
    # Repetitions interleaved at random over the run, so that a burst of load from elsewhere on the
    # machine spoils one repetition of several benchmarks rather than every repetition of one.
    out = subprocess.run([binary, f"--benchmark_filter={pattern}", "--benchmark_format=json",
                          f"--benchmark_repetitions={repetitions}", "--benchmark_report_aggregates_only=true",
                          "--benchmark_enable_random_interleaving=true"],
                         check=True, capture_output=True, text=True).stdout
    to_us = {"ns": 1e-3, "us": 1.0, "ms": 1e3, "s": 1e6}
    medians, cvs = {}, {}
    for b in json.loads(out)["benchmarks"]:
        # With one repetition Google Benchmark reports the run itself, no aggregates.
        if b.get("aggregate_name") == "median" or (repetitions == 1 and b["run_type"] == "iteration"):
            medians[b["run_name"]] = {**b, "us": b["real_time"] * to_us[b["time_unit"]]}
        elif b.get("aggregate_name") == "cv":
            cvs[b["run_name"]] = b
    for name, record in medians.items():
        if name in cvs:
            record["cv"] = cvs[name]
    return medians
