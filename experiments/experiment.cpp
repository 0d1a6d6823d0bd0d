#include "experiments/experiment.hpp"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdio>
#include <exception>
#include <map>
#include <mutex>
#include <numeric>
#include <span>
#include <stdexcept>
#include <thread>

#include "experiments/dataset.hpp"
#include "experiments/json_file.hpp"
#include "experiments/provenance.hpp"

namespace xgrad {

Profile parse_profile(const std::string& name) {
    if (name == "quick") return Profile::quick;
    if (name == "paper") return Profile::paper;
    throw std::invalid_argument("unknown profile '" + name + "' (known: quick, paper)");
}

const char* profile_name(Profile profile) { return profile == Profile::quick ? "quick" : "paper"; }

namespace {

// The result of a run trained (or found finished) into `dir`, with its rows.
RunResult result_of(const RunSpec& spec, const std::filesystem::path& dir, TrainOutcome outcome) {
    RunResult r{spec.name, dir / spec.name, std::move(outcome), {}};
    // A run that diverged before its first evaluation has no rows.
    if (std::filesystem::exists(r.dir / "metrics.csv")) r.rows = read_metrics_csv(r.dir / "metrics.csv");
    return r;
}

// Throws on every rank when a run failed on any: the rank that met the error rethrows it, the
// others name that rank.
void agree_on_failures(Communicator& ranks, const std::exception_ptr& error) {
    const double failed = error ? 1.0 : 0.0;
    std::vector<double> every(static_cast<std::size_t>(ranks.size()));
    ranks.all_gather(std::span(&failed, 1), every);
    if (error) std::rethrow_exception(error);
    for (std::size_t r = 0; r < every.size(); ++r) {
        if (every[r] != 0.0) {
            throw std::runtime_error("a run failed on rank " + std::to_string(r) + " of " + std::to_string(every.size()) +
                                     " (its error names it)");
        }
    }
}

// The builds that made the run in `run_dir`: the one that started it (config.json) and, if
// another, the one that ended it (summary.json); none for a run not started.
std::vector<std::string> builds_of_run(const std::filesystem::path& run_dir) {
    std::vector<std::string> builds;
    for (const char* file : {"config.json", "summary.json"}) {
        if (!std::filesystem::exists(run_dir / file)) continue;
        const std::string build = build_of(read_json_file(run_dir / file));
        if (builds.empty() || builds.back() != build) builds.push_back(build);
    }
    return builds;
}

// When the runs of `specs` under `dir` would come from more than one build (counting this one when
// any run is yet to be trained or resumed), those made by another build than this one, or by
// several, grouped by "build A" or "build A, then build B": refused, or with options.rerun_stale
// those among `mine` deleted to be trained again (each rank deletes only its own, once every rank
// has looked at them all, and no rank reads another's runs again before they are trained). Without
// rerun_stale, runs all finished by one earlier build are reused: their table is of that build,
// and says so.
void settle_stale_runs(const std::vector<RunSpec>& specs, const std::vector<std::size_t>& mine,
                       const std::filesystem::path& dir, const ExperimentOptions& options, std::ostream& log) {
    const std::string current = this_build();
    std::map<std::string, std::vector<std::size_t>> stale;
    std::set<std::string> table_builds;
    for (std::size_t k = 0; k < specs.size(); ++k) {
        const std::vector<std::string> builds = builds_of_run(dir / specs[k].name);
        table_builds.insert(builds.begin(), builds.end());
        if (!std::filesystem::exists(dir / specs[k].name / "summary.json")) table_builds.insert(current);
        if (builds.empty() || builds == std::vector<std::string>{current}) continue;
        std::string made_by;
        for (const std::string& b : builds) made_by += (made_by.empty() ? "build " : ", then build ") + b;
        stale[made_by].push_back(k);
    }
    if (options.rerun_stale) {
        options.ranks->barrier();
        for (const auto& [made_by, runs] : stale) {
            for (std::size_t k : runs) {
                if (std::ranges::find(mine, k) == mine.end()) continue;
                std::filesystem::remove_all(dir / specs[k].name);
                log << specs[k].name << ": made by " << made_by << "; deleted, to be trained again by build " << current << std::endl;
            }
        }
        return;
    }
    if (table_builds.size() <= 1) return;
    std::string listed;
    std::size_t count = 0;
    for (const auto& [made_by, runs] : stale) {
        listed += "\n  " + made_by + ":";
        for (std::size_t k : runs) listed += " " + specs[k].name;
        count += runs.size();
    }
    throw std::runtime_error(std::to_string(count) + " of the runs under " + dir.string() +
                             " were made by another build than this one (" + current + "), and a table must not mix builds:" +
                             listed + "\ngive --rerun-stale to delete them and train them again, or another --results");
}

}  // namespace

std::vector<RunResult> run_all(const std::vector<RunSpec>& specs, const std::filesystem::path& dir,
                               const ExperimentOptions& options, std::ostream& log) {
    Communicator& ranks = *options.ranks;
    const std::size_t rank_count = static_cast<std::size_t>(ranks.size()), rank = static_cast<std::size_t>(ranks.rank());
    // This rank's whole runs (dealt out in turn), and the runs every rank trains together.
    std::vector<std::size_t> mine, shared;
    for (std::size_t k = 0; k < specs.size(); ++k) {
        if (specs[k].over_every_rank && rank_count == 1) {
            // Alone it would be another training than its name says (one batch's statistics, not each rank's).
            throw std::invalid_argument(specs[k].name + ": a run over every rank needs mpirun's ranks, and this process is alone");
        }
        if (specs[k].over_every_rank) {
            shared.push_back(k);
        } else if (k % rank_count == rank) {
            mine.push_back(k);
        }
    }
    std::vector<std::size_t> deletable = mine;  // rank 0 deletes the shared runs' stale directories
    if (rank == 0) deletable.insert(deletable.end(), shared.begin(), shared.end());
    settle_stale_runs(specs, deletable, dir, options, log);
    std::vector<RunResult> results(specs.size());
    std::atomic<std::size_t> next{0};
    std::mutex log_mutex;
    std::exception_ptr first_error;
    auto worker = [&] {
        for (std::size_t i; (i = next++) < mine.size();) {
            const RunSpec& spec = specs[mine[i]];
            TrainConfig config = spec.config;
            if (options.jobs > 1 || rank_count > 1) config.threads = 1;
            try {
                RunResult r = result_of(spec, dir, train(config, dir / spec.name, spec.name, spec.probe, single_process()));
                std::lock_guard lock(log_mutex);
                log << spec.name << ": " << r.outcome.status << (r.outcome.was_already_finished ? " (earlier)" : "")
                    << ", final test accuracy " << final_test_acc(r) << std::endl;  // a line at a time, also into a log file
                results[mine[i]] = std::move(r);
            } catch (const std::exception& e) {
                std::lock_guard lock(log_mutex);
                if (!first_error) first_error = std::make_exception_ptr(std::runtime_error(spec.name + ": " + e.what()));
                next = mine.size();  // stop handing out runs
            }
        }
    };
    std::vector<std::thread> threads;
    for (std::size_t j = 1; j < std::max<std::size_t>(options.jobs, 1); ++j) threads.emplace_back(worker);
    worker();
    for (auto& t : threads) t.join();
    const auto record_builds = [&] {
        for (const RunResult& r : results) {
            for (std::string& build : builds_of_run(r.dir)) options.run_builds->insert(std::move(build));
        }
    };
    if (rank_count == 1) {
        if (first_error) std::rethrow_exception(first_error);
        record_builds();
        return results;
    }
    agree_on_failures(ranks, first_error);
    // An error in a run over every rank is not held back: the other ranks may wait in one of the
    // run's collectives that this rank will never join, and xgrad's main ends them all.
    for (std::size_t k : shared) {
        const RunSpec& spec = specs[k];
        TrainConfig config = spec.config;
        config.threads = 1;
        TrainOutcome outcome;
        try {
            outcome = train(config, dir / spec.name, spec.name, spec.probe, options.ranks);
        } catch (const std::exception& e) {
            throw std::runtime_error(spec.name + ": " + e.what());
        }
        if (rank == 0) {
            results[k] = result_of(spec, dir, std::move(outcome));
            log << spec.name << ": " << results[k].outcome.status << (results[k].outcome.was_already_finished ? " (earlier)" : "")
                << " over " << rank_count << " ranks, final test accuracy " << final_test_acc(results[k]) << std::endl;
        }
    }
    if (!shared.empty()) ranks.barrier();  // rank 0 has written them all before the others read them
    for (std::size_t k = 0; k < specs.size(); ++k) {
        const RunSpec& spec = specs[k];
        const bool trained_here = spec.over_every_rank ? rank == 0 : k % rank_count == rank;  // its result is in hand
        if (trained_here) continue;
        const std::string trained_by =
            spec.over_every_rank ? "every rank" : "rank " + std::to_string(k % rank_count);
        auto outcome = finished_outcome(spec.config, dir / spec.name);
        if (!outcome) {
            throw std::runtime_error(spec.name + ": " + trained_by + " trained it, but " + (dir / spec.name).string() +
                                     " holds no finished run on rank " + std::to_string(rank) +
                                     ": every rank must see the same results directory");
        }
        results[k] = result_of(spec, dir, std::move(*outcome));
        log << spec.name << ": " << results[k].outcome.status << " on " << trained_by << ", final test accuracy "
            << final_test_acc(results[k]) << std::endl;
    }
    record_builds();
    return results;
}

std::vector<RunSpec> seeded_runs(const std::string& arm, const TrainConfig& base, std::size_t seeds,
                                 const Probe& probe) {
    std::vector<std::uint64_t> first(seeds);
    std::iota(first.begin(), first.end(), 0);
    return seeded_runs(arm, base, first, probe);
}

std::vector<RunSpec> seeded_runs(const std::string& arm, const TrainConfig& base, const std::vector<std::uint64_t>& seeds,
                                 const Probe& probe) {
    std::vector<RunSpec> specs;
    for (std::uint64_t k : seeds) {
        TrainConfig config = base;
        config.seed = k;
        specs.push_back({arm + "/seed" + std::to_string(k), config, probe});
    }
    return specs;
}

std::vector<const RunResult*> runs_of(const std::vector<RunResult>& results, const std::string& arm) {
    std::vector<const RunResult*> out;
    for (const auto& r : results) {
        if (r.name.compare(0, arm.size() + 1, arm + "/") == 0) out.push_back(&r);
    }
    return out;
}

std::vector<double> each(const std::vector<const RunResult*>& runs, const std::function<double(const RunResult&)>& value) {
    std::vector<double> out;
    for (const RunResult* r : runs) out.push_back(value(*r));
    return out;
}

void append_point(Curve& curve, double x, const Spread& s) {
    curve.x.push_back(x);
    curve.mean.push_back(s.mean);
    curve.lo.push_back(s.min);
    curve.hi.push_back(s.max);
}

Curve mean_curve(const std::string& label, const std::vector<const RunResult*>& runs,
                 const std::function<double(const MetricsRow&)>& value) {
    Curve curve{label, {}, {}, {}, {}};
    if (runs.empty()) return curve;
    std::size_t rows = runs.front()->rows.size();
    for (const RunResult* r : runs) rows = std::min(rows, r->rows.size());
    for (std::size_t i = 0; i < rows; ++i) {
        std::vector<double> values;
        for (const RunResult* r : runs) values.push_back(value(r->rows[i]));
        append_point(curve, static_cast<double>(runs.front()->rows[i].step), spread_of(values));
    }
    return curve;
}

std::string diverged_note(const std::vector<const RunResult*>& runs) {
    std::size_t diverged = 0;
    for (const RunResult* r : runs) diverged += r->diverged();
    if (diverged == 0) return "";
    return " (" + std::to_string(diverged) + " of " + std::to_string(runs.size()) + " diverged)";
}

std::optional<std::size_t> steps_to_reach(const RunResult& run, double target) {
    for (const auto& row : run.rows) {
        if (row.test_acc >= target) return row.step;
    }
    return std::nullopt;
}

const MetricsRow& RunResult::first_row() const {
    if (rows.empty()) throw std::runtime_error(dir.string() + ": the run has no evaluation (" + outcome.status + " before the first)");
    return rows.front();
}

const MetricsRow& RunResult::last_row() const {
    first_row();
    return rows.back();
}

double mean_over_evaluations(const RunResult& run, const std::string& column) {
    run.first_row();  // a run without evaluations is an error, not a 0/0
    double sum = 0;
    for (const auto& row : run.rows) sum += row.at(column);
    return sum / static_cast<double>(run.rows.size());
}

double final_test_acc(const RunResult& run) { return run.rows.empty() ? 0.0 : run.rows.back().test_acc; }

double best_test_acc(const RunResult& run) {
    double best = 0;
    for (const auto& row : run.rows) best = std::max(best, row.test_acc);
    return best;
}

std::string split_sizes(const std::string& dataset) {
    return std::to_string(load_dataset(dataset, Split::train).labels.size()) + " train / " +
           std::to_string(load_dataset(dataset, Split::test).labels.size()) + " test images";
}

std::string verdict_greater(const Spread& a, const Spread& b, double margin) {
    if (welch_greater(a, b).p < significance_level && a.mean - b.mean > margin) return "reproduced";
    if (a.mean > b.mean) return "partly";
    return "not reproduced";
}

std::string greater_rule(const std::string& a, const std::string& b) {
    char level[16];
    std::snprintf(level, sizeof level, "%g", significance_level);
    return "reproduced when " + a + "'s mean is above " + b + "'s by Welch's one-sided t-test at p < " + level +
           "; partly when it is higher at all";
}

std::string welch_note(const Spread& a, const Spread& b) { return "Welch " + format_p(welch_greater(a, b).p); }

void write_claims(const std::filesystem::path& dir, const std::string& experiment, const std::string& title,
                  const ExperimentOptions& options, const std::vector<Claim>& claims, const std::vector<std::string>& tables,
                  const std::vector<PlotFile>& plots, const std::string& setup) {
    plot(plots, dir);
    nlohmann::json pngs = nlohmann::json::array();
    for (const PlotFile& p : plots) pngs.push_back(p.png.string());
    nlohmann::json rows = nlohmann::json::array();
    for (const auto& c : claims) {
        rows.push_back({{"claim", c.claim}, {"source", c.source}, {"paper", c.paper}, {"measured", c.measured},
                        {"verdict", c.verdict}, {"rule", c.rule}});
    }
    const nlohmann::json json = {{"experiment", experiment}, {"title", title}, {"profile", profile_name(options.profile)},
                                 {"setup", setup}, {"claims", rows}, {"tables", tables}, {"plots", pngs},
                                 {"builds", *options.run_builds}, {"analysis_build", this_build()}};
    write_json_file(dir / "claims.json", json);
}

}  // namespace xgrad
