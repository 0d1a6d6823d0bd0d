// `xgrad sweep SPEC.json`: an experiment written as a spec file rather than as a driver. The spec
// is a JSON object (README, "Experiments as spec files"):
//
//   {"name": "lr-bn",
//    "description": "optional free text",
//    "base": {"model": "paper-mlp", "optimizer": "sgd", "steps": 10000, "eval-every": 250},
//    "grid": {"norm": ["batch", "none"], "lr": [0.1, 0.5, 3.0]},
//    "seeds": [0, 1, 2],
//    "metrics": ["final_test_acc", "best_test_acc", {"steps_to": 0.80}]}
//
// The keys of base and grid are `xgrad train`'s flags without their dashes, parsed by the one
// parser of train_flags.hpp, so they take the same values and give the same errors; a value is a
// number, a string, or for a flag without a value (noisy-bn) true (given) or false (omitted). out
// and threads are not keys (the sweep owns the directories, --jobs the runs trained at once, and a
// run's bits do not depend on its threads), nor is seed (the seeds list is). A key is in base or in
// the grid, not both. The arms are the grid's cartesian product, its first key outermost and its
// last key varying fastest, each list in its order; an empty grid is one arm, "base". Each arm is a
// directory named after its values ("norm=batch,lr=0.1"), and each of its runs a trainer run
// directory "<arm>/seed<k>", so a stopped sweep resumes and a finished run is reused; arms times
// seeds are at most 100,000 runs. metrics defaults to the final and the best test accuracy.
//
// Every error names the spec file and the key ("lr.json: grid.lr[2]: --lr: expected a finite
// number > 0; got -1"), or the arm when it is the combination of keys that is wrong, and is raised
// before any directory is written.
#pragma once

#include <cstdint>
#include <filesystem>
#include <ostream>
#include <string>
#include <utility>
#include <vector>

#include "experiments/experiment.hpp"

namespace xgrad {

// What a sweep reports for each arm, over its seeds.
struct SweepMetric {
    enum class Kind { final_test_acc, best_test_acc, steps_to };
    Kind kind = Kind::final_test_acc;
    double target = 0;  // steps_to: the test accuracy to reach

    // Its column: "final_test_acc", "best_test_acc", "steps_to_0.8".
    std::string name() const;
    // Its values over `runs`: one per run; for steps_to, one per run that reached the target
    // without diverging (the steps of its first evaluation at or above it).
    std::vector<double> values(const std::vector<const RunResult*>& runs) const;
};

struct SweepArm {
    std::string name;  // its directory under the sweep's
    std::vector<std::pair<std::string, std::string>> values;  // (grid key, value as written in the name)
    TrainConfig config;  // seed aside
};

struct Sweep {
    std::filesystem::path file;
    std::string bytes;  // the spec file as read, copied beside the summary
    std::string name;
    std::vector<std::string> grid_keys;
    std::vector<SweepArm> arms;
    std::vector<std::uint64_t> seeds;
    std::vector<SweepMetric> metrics;

    // Every run: each arm in order, its seeds in order.
    std::vector<RunSpec> runs() const;
};

// Reads and checks the spec file; std::invalid_argument naming the file and the key for anything
// wrong with it. Writes nothing.
Sweep load_sweep(const std::filesystem::path& file);

// Trains, resumes or reuses every run under <options.results>/<name>/ (run_all), after checking
// that no run directory there holds a run of another configuration. Then the reporting rank writes
// summary.csv, summary.md, test_accuracy.png (with its data) and spec.json there, and prints the
// table to `out`.
void run_sweep(const Sweep& sweep, const ExperimentOptions& options, std::ostream& out);

}  // namespace xgrad
