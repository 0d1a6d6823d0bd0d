// What the experiment drivers share: the profile (quick for the test suite, paper for the real
// reproduction), training a set of runs two at a time, the spread over seeds, curves averaged
// over seeds, and the claims file each driver leaves for `xgrad report`.
//
// A driver writes under <results>/<experiment>/: one run directory per (arm, seed) as trainer.hpp
// describes (resumed after a kill, reused once finished), its PNG plots with their data, and
// claims.json: the rows of REPORT.md it contributes and the tables it shows, and the builds
// (provenance.hpp) that made the runs behind them.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <ostream>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "experiments/flag_range.hpp"
#include "experiments/metrics_log.hpp"
#include "experiments/plot.hpp"
#include "experiments/statistics.hpp"
#include "experiments/trainer.hpp"
#include "layers/distributed/communicator.hpp"

namespace xgrad {

enum class Profile { quick, paper };

// "quick" or "paper"; anything else is std::invalid_argument.
Profile parse_profile(const std::string& name);
const char* profile_name(Profile profile);

struct ExperimentOptions {
    std::filesystem::path results = "results";
    Profile profile = Profile::quick;
    // Runs trained at once by each process, each on one thread: for these small models two
    // runs side by side use 2 cores better than one run on two threads.
    std::size_t jobs = 2;
    // The processes a sweep is spread over (under mpirun, world()): run_all deals whole runs out to
    // them, and rank 0 alone prints the summary and writes the plots and claims.
    std::shared_ptr<Communicator> ranks = single_process();
    bool writes_report() const { return ranks->rank() == 0; }
    // What run_all does with runs it would reuse or resume that another build than this one made
    // (or several): false, refuse before training anything; true, delete and train them again.
    bool rerun_stale = false;
    // The builds of the runs run_all has returned under these options (and their copies), which
    // write_claims records: a driver's runs, when each driver starts with a set of its own.
    std::shared_ptr<std::set<std::string>> run_builds = std::make_shared<std::set<std::string>>();
};

namespace experiment_range {
// More runs at once than the machine has cores only slows each of them down.
inline constexpr WholeRange jobs{1, 64};
}  // namespace experiment_range

struct RunSpec {
    std::string name;  // the run's directory under the experiment's
    TrainConfig config;
    Probe probe;
    // Trained by every rank of options.ranks together, data-parallel (each rank a share of each
    // batch, SyncBatchNorm's statistics over them all), rather than whole by one rank.
    bool over_every_rank = false;
};

struct RunResult {
    std::string name;
    std::filesystem::path dir;
    TrainOutcome outcome;
    std::vector<MetricsRow> rows;
    bool diverged() const { return outcome.status == "diverged"; }
    // std::runtime_error naming the run when it has no evaluation (it diverged before the first).
    const MetricsRow& first_row() const;
    const MetricsRow& last_row() const;
};

// Trains every run (or resumes it, or reuses it when finished) under `dir`, options.jobs at a
// time, and returns them in the order given. The first error of any run is rethrown once all
// have stopped. A table must not mix builds: before training anything, runs found made by another
// build than this one, or by several (a run resumed under another), are refused, naming them and
// their builds, or with options.rerun_stale deleted and trained again; the builds of the runs
// returned are added to options.run_builds. Over W ranks, rank r trains the runs k with k mod W = r, each on one thread, and
// then reads the others' finished runs from `dir` (a directory every rank sees): every rank
// returns the same results, those of one process training them all, since a run's bits depend
// neither on its threads nor on who trains it. Runs over_every_rank are trained after those, one
// at a time, by every rank together, on one thread each (rank 0 writes them); alone, a process
// refuses them (std::invalid_argument) before training anything. A run with
// SyncBatchNorm that is not over_every_rank is refused (its rank would have no other ranks to
// share statistics with).
std::vector<RunResult> run_all(const std::vector<RunSpec>& specs, const std::filesystem::path& dir,
                               const ExperimentOptions& options, std::ostream& log);

// The runs of one arm over seeds: "<arm>/seed<k>" for k < seeds, each `base` with seed k.
std::vector<RunSpec> seeded_runs(const std::string& arm, const TrainConfig& base, std::size_t seeds,
                                 const Probe& probe = {});
// The same for the seeds listed, in their order.
std::vector<RunSpec> seeded_runs(const std::string& arm, const TrainConfig& base, const std::vector<std::uint64_t>& seeds,
                                 const Probe& probe = {});
// The results of one arm (those named "<arm>/...").
std::vector<const RunResult*> runs_of(const std::vector<RunResult>& results, const std::string& arm);
// value(run) for every run of the list.
std::vector<double> each(const std::vector<const RunResult*>& runs, const std::function<double(const RunResult&)>& value);

// Adds the point (x, s.mean) with the band s.min..s.max.
void append_point(Curve& curve, double x, const Spread& s);

// The curve of `value(row)` averaged over runs at each step that every run reached, with a
// band from the lowest to the highest run.
Curve mean_curve(const std::string& label, const std::vector<const RunResult*>& runs,
                 const std::function<double(const MetricsRow&)>& value);

// "" when no run diverged, else " (k of n diverged)": a diverged run's figures are those of its
// last evaluation before it diverged (0 when it had none).
std::string diverged_note(const std::vector<const RunResult*>& runs);

// The first step at which a run's test accuracy reached `target`, if it did.
std::optional<std::size_t> steps_to_reach(const RunResult& run, double target);

// The mean of a probe column over a run's evaluations; std::runtime_error naming the run when it
// has none, std::out_of_range naming the column when its rows lack it.
double mean_over_evaluations(const RunResult& run, const std::string& column);

// The last row's test accuracy (0 for a run without rows).
double final_test_acc(const RunResult& run);
double best_test_acc(const RunResult& run);

// "7996 train / 2004 test images": the sizes of a data set's splits, for a setup text.
std::string split_sizes(const std::string& dataset);

// A row of REPORT.md: the claim, where it is from, the paper's figure, xgrad's measurement,
// the verdict and the rule that gives it.
struct Claim {
    std::string claim, source, paper, measured, verdict, rule;
};

// The verdict for "a beats b": reproduced when Welch's one-sided test puts a's mean above b's at
// p < significance_level (which needs at least 2 seeds on each side) and the difference exceeds
// `margin`; partly when a's mean is higher at all; else not reproduced.
std::string verdict_greater(const Spread& a, const Spread& b, double margin = 0.0);

// verdict_greater's rule in words for Claim::rule, with the two sides named: "reproduced when
// <a>'s mean is above <b>'s by Welch's one-sided t-test at p < 0.05; partly when it is higher at all".
std::string greater_rule(const std::string& a, const std::string& b);
// The p-value behind verdict_greater(a, b), for a claim row's measurement: "Welch p = 0.004".
std::string welch_note(const Spread& a, const Spread& b);

// Draws the plots (their png relative to dir), then writes <dir>/claims.json for `xgrad report`:
// the profile, the claims, markdown tables and the plots' paths, options.run_builds, and this
// build as the one that computed the tables and verdicts (which may reuse an earlier build's runs).
void write_claims(const std::filesystem::path& dir, const std::string& experiment, const std::string& title,
                  const ExperimentOptions& options, const std::vector<Claim>& claims, const std::vector<std::string>& tables,
                  const std::vector<PlotFile>& plots, const std::string& setup);

}  // namespace xgrad
