// convergence and distributions: the same runs (paper-mlp, BN on and off, seeds 0..), every
// evaluation also recording the 15th/50th/85th percentiles of unit 0's input to sigmoid3 over the
// first 1,000 test images. convergence reads their accuracy, distributions their percentiles.
#include <cmath>

#include <xtensor/xview.hpp>

#include "experiments/dataset.hpp"
#include "experiments/drivers.hpp"
#include "experiments/probes.hpp"

namespace xgrad {

namespace {

struct Plan {
    std::size_t steps, eval_every, seeds;
};

Plan plan_for(Profile p) { return p == Profile::paper ? Plan{50000, 500, 3} : Plan{60, 20, 2}; }

const char* const arms[] = {"bn-off", "bn-on"};

std::vector<RunResult> convergence_runs(const std::string& dataset, const ExperimentOptions& options, std::ostream& log) {
    const Plan plan = plan_for(options.profile);
    const Dataset test = load_dataset(dataset, Split::test);
    const std::size_t probe_count = std::min<std::size_t>(1000, test.images.shape()[0]);
    xt::xarray<float> probe_images = xt::view(test.images, xt::range(0, probe_count));
    probe_images.reshape({probe_count, probe_images.size() / probe_count});  // paper-mlp takes flat images
    const Probe probe = [probe_images](Sequential<float>& model, const Batch&) {
        return unit_input_percentiles(model, "sigmoid3", 0, probe_images);
    };
    std::vector<RunSpec> specs;
    for (const char* arm : arms) {
        TrainConfig c = paper_mlp_config(dataset, norm_from_bn(std::string(arm) == "bn-on"));
        c.steps = plan.steps;
        c.eval_every = plan.eval_every;
        for (auto& s : seeded_runs(arm, c, plan.seeds, probe)) specs.push_back(std::move(s));
    }
    return run_all(specs, options.results / "convergence" / dataset, options, log);
}

// Test accuracy at `step`, or at the last evaluation before it.
double acc_at(const RunResult& run, std::size_t step) {
    double acc = 0;
    for (const auto& row : run.rows) {
        if (row.step <= step) acc = row.test_acc;
    }
    return acc;
}

}  // namespace

void run_convergence(const ExperimentOptions& options, std::ostream& out) {
    const Plan plan = plan_for(options.profile);
    // The paper's early point, 8k of 50k steps, at the same fraction of a shorter run.
    const std::size_t early = std::max<std::size_t>(plan.steps * 8 / 50 / plan.eval_every, 1) * plan.eval_every;
    const auto dir = options.results / "convergence";
    std::vector<Claim> claims;
    std::vector<std::string> plots;
    std::string table = "| data set | BN | test acc. at step " + std::to_string(early) +
                        " | final test acc. | best test acc. |\n|---|---|---|---|---|\n";
    for (const std::string dataset : {"mnist", "fashion-mnist"}) {
        const auto results = convergence_runs(dataset, options, out);
        PlotSpec spec{"paper-mlp on " + dataset + ": test accuracy (mean, band = min..max over seeds)", "training step",
                      "test accuracy", false, {}};
        Spread early_acc[2], final_acc[2];
        for (int bn = 0; bn < 2; ++bn) {
            const auto runs = runs_of(results, arms[bn]);
            spec.curves.push_back(mean_curve(std::string("BN ") + (bn ? "on" : "off"), runs,
                                             [](const MetricsRow& r) { return r.test_acc; }));
            early_acc[bn] = spread_of(each(runs, [&](const RunResult& r) { return acc_at(r, early); }));
            final_acc[bn] = spread_of(each(runs, final_test_acc));
            table += "| " + dataset + " | " + (bn ? "on" : "off") + " | " + format_spread(early_acc[bn]) + " | " +
                     format_spread(final_acc[bn]) + diverged_note(runs) + " | " +
                     format_spread(spread_of(each(runs, best_test_acc))) + " |\n";
        }
        const std::string png = "test_accuracy_" + dataset + ".png";
        if (options.writes_report()) plot(spec, dir / png);
        plots.push_back(png);
        const bool mnist = dataset == "mnist";
        const std::string rule = greater_rule("BN", "no BN");
        claims.push_back({"BN converges faster (" + dataset + ")", "Ioffe & Szegedy §4.1, Fig. 1(a)",
                          mnist ? "at 8k steps: BN ≈ 0.95+, no BN ≈ 0.90 (read off the figure)" : "(MNIST only in the paper)",
                          "at step " + std::to_string(early) + ": BN " + format_spread(early_acc[1]) + ", no BN " +
                              format_spread(early_acc[0]) + "; " + welch_note(early_acc[1], early_acc[0]),
                          verdict_greater(early_acc[1], early_acc[0]), rule});
        claims.push_back({"BN ends at a higher test accuracy (" + dataset + ")", "Ioffe & Szegedy §4.1, Fig. 1(a)",
                          mnist ? "at 50k steps: BN ≈ 0.98, no BN ≈ 0.97" : "(MNIST only in the paper)",
                          "final: BN " + format_spread(final_acc[1]) + ", no BN " + format_spread(final_acc[0]) + "; " +
                              welch_note(final_acc[1], final_acc[0]),
                          verdict_greater(final_acc[1], final_acc[0]), rule});
        out << dataset << ": final test accuracy BN on " << format_spread(final_acc[1]) << ", off "
            << format_spread(final_acc[0]) << "\n";
    }
    const std::string setup = "paper-mlp (784-100-100-100-10, sigmoid), SGD lr 0.1, batch 60, torch's default init, " +
                              std::to_string(plan.steps) + " steps, test set every " + std::to_string(plan.eval_every) +
                              " steps, seeds 0.." + std::to_string(plan.seeds - 1) +
                              ". \"mnist\" is the original MNIST (60,000 train / 10,000 test), as in the paper.";
    if (options.writes_report()) {
        write_claims(dir, "convergence", "Faster convergence with BN (paper §4.1)", options, claims, {table}, plots,
                     setup);
    }
}

void run_distributions(const ExperimentOptions& options, std::ostream& out) {
    const Plan plan = plan_for(options.profile);
    const auto results = convergence_runs("mnist", options, out);
    const auto dir = options.results / "distributions";
    std::filesystem::create_directories(dir);
    std::vector<std::string> plots;
    Spread drift[2];
    for (int bn = 0; bn < 2; ++bn) {
        const auto runs = runs_of(results, arms[bn]);
        PlotSpec spec{std::string("sigmoid3's input, unit 0, BN ") + (bn ? "on" : "off") +
                          ": percentiles over 1,000 test images",
                      "training step", "sigmoid input", false, {}};
        for (const char* p : {"p15", "p50", "p85"}) {
            spec.curves.push_back(mean_curve(p, runs, [p](const MetricsRow& r) { return r.at(p); }));
        }
        const std::string png = std::string("sigmoid_input_bn_") + (bn ? "on" : "off") + ".png";
        if (options.writes_report()) plot(spec, dir / png);
        plots.push_back(png);
        // How far the percentiles move from the first evaluation to the last, averaged over the three.
        drift[bn] = spread_of(each(runs, [](const RunResult& r) {
            double sum = 0;
            for (const char* p : {"p15", "p50", "p85"}) sum += std::abs(r.last_row().at(p) - r.first_row().at(p));
            return sum / 3;
        }));
    }
    const Claim claim{"BN keeps the distribution of a sigmoid's input stable over training",
                      "Ioffe & Szegedy §4.1, Fig. 1(b, c)",
                      "without BN the percentiles drift over training; with BN they stay nearly constant",
                      "mean |change| of the 3 percentiles from step " + std::to_string(plan.eval_every) +
                          " to the end: no BN " + format_spread(drift[0], 3) + ", BN " + format_spread(drift[1], 3) +
                          "; " + welch_note(drift[0], drift[1]),
                      verdict_greater(drift[0], drift[1]), greater_rule("no BN's drift", "BN's")};
    out << "sigmoid-input drift: no BN " << format_spread(drift[0], 3) << ", BN " << format_spread(drift[1], 3) << "\n";
    if (options.writes_report()) {
        write_claims(dir, "distributions", "Stable sigmoid inputs with BN (paper Fig. 1b, c)", options, {claim}, {},
                     plots, "The runs of `convergence` on mnist (results/convergence/mnist), probed at every evaluation.");
    }
}

}  // namespace xgrad
