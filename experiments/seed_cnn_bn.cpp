#include "experiments/seed_cnn_bn.hpp"

#include <cstdio>
#include <optional>
#include <string>

#include "experiments/experiment.hpp"
#include "experiments/metrics_log.hpp"
#include "experiments/plot.hpp"
#include "experiments/trainer.hpp"

namespace xgrad {

namespace {

std::optional<double> test_acc_at(const std::vector<MetricsRow>& rows, std::size_t step) {
    for (const auto& r : rows) {
        if (r.step == step) return r.test_acc;
    }
    return std::nullopt;
}

std::string percent(std::optional<double> v) {
    if (!v) return "-";
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.2f%%", 100.0 * *v);
    return buf;
}

}  // namespace

void run_seed_cnn_bn(const SeedCnnBnOptions& options, std::ostream& out) {
    const auto root = options.results / "seed-cnn-bn";
    struct Arm {
        const char* name;
        bool bn;
    };
    const Arm arms[] = {{"bn-on", true}, {"bn-off", false}};
    std::vector<PlotSeries> series;
    char line[256];
    std::snprintf(line, sizeof line, "%-8s %12s %12s %12s %8s %10s\n", "run", "acc@100", "acc@300", "final acc", "steps",
                  "seconds");
    std::string table = line;
    std::vector<RunSpec> specs;
    for (const Arm& arm : arms) {
        TrainConfig config;
        config.model.name = "seed-cnn";
        config.model.norm = norm_from_bn(arm.bn);
        config.dataset = "fashion-mnist";
        config.optimizer = "adam";
        config.lr = 1e-3;
        config.batch = 64;
        config.epochs = options.epochs;
        config.eval_every = options.eval_every;
        config.seed = 0;
        config.threads = options.threads;
        specs.push_back({arm.name, config, {}});
    }
    // One run after the other on options.threads; under mpirun one arm per rank.
    const auto results = run_all(specs, root, {.results = options.results, .jobs = 1, .ranks = options.ranks, .rerun_stale = options.rerun_stale}, out);
    if (options.ranks->rank() != 0) return;
    for (std::size_t k = 0; k < results.size(); ++k) {
        const RunResult& r = results[k];
        std::snprintf(line, sizeof line, "%-8s %12s %12s %12s %8zu %10.1f\n", arms[k].name,
                      percent(test_acc_at(r.rows, 100)).c_str(), percent(test_acc_at(r.rows, 300)).c_str(),
                      percent(r.outcome.summary.value("final_test_acc", 0.0)).c_str(),
                      r.outcome.summary.value("steps", std::size_t{0}), r.outcome.summary.value("seconds", 0.0));
        table += line;
        series.push_back({std::string("seed-cnn, BN ") + (arms[k].bn ? "on" : "off"), r.dir / "metrics.csv"});
    }
    out << "\nseed-cnn on Fashion-MNIST, " << options.epochs << " epoch(s), Adam lr 1e-3, batch 64, seed 0\n" << table;
    const auto png = root / "test_accuracy.png";
    plot(test_accuracy_plot(series, "Seed CNN on Fashion-MNIST: test accuracy with and without BN"), png);
    out << "plot: " << png.string() << "\n";
}

}  // namespace xgrad
