// convergence and distributions: the same runs (paper-mlp with and without BN, under torch's
// default init and under the paper's Gaussian init, seeds 0..), every evaluation also recording
// the 15th/50th/85th percentiles of unit 0's input to sigmoid3 over the first 1,000 test images.
// convergence reads their accuracy, distributions the percentiles of the default-init runs.
#include <algorithm>
#include <cmath>
#include <cstdio>

#include <xtensor/xview.hpp>

#include "experiments/dataset.hpp"
#include "experiments/drivers.hpp"
#include "experiments/probes.hpp"
#include "experiments/steps_to_target.hpp"

namespace xgrad {

namespace {

struct Plan {
    std::size_t steps, eval_every, seeds;
};

Plan plan_for(Profile p) { return p == Profile::paper ? Plan{50000, 500, 5} : Plan{60, 20, 2}; }

// §4.1 initializes the weights to "small random Gaussian values" without giving the scale; 0.1
// trains this MLP without BN (the init driver: 0.01 does not).
constexpr double paper_init_sigma = 0.1;

struct Arm {
    const char* name;
    bool bn, gaussian;
    const char* label;
};

// Without then with BN, under each init: the pairs the claims compare.
constexpr Arm arms[] = {{"bn-off", false, false, "no BN"},
                        {"bn-on", true, false, "BN"},
                        {"bn-off-gaussian", false, true, "no BN, N(0, 0.1) init"},
                        {"bn-on-gaussian", true, true, "BN, N(0, 0.1) init"}};

// The speed target is this fraction of the lowest final test accuracy among the two compared arms'
// runs: every run that did not diverge reaches it, and it lies near the top of the slower arm's climb.
constexpr double target_fraction = 0.99;

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
    for (const Arm& arm : arms) {
        TrainConfig c = paper_mlp_config(dataset, norm_from_bn(arm.bn));
        if (arm.gaussian) c.model.init_sigma = paper_init_sigma;
        c.steps = plan.steps;
        c.eval_every = plan.eval_every;
        for (auto& s : seeded_runs(arm.name, c, plan.seeds, probe)) specs.push_back(std::move(s));
    }
    return run_all(specs, options.results / "convergence" / dataset, options, log);
}

// target_fraction of the lowest final test accuracy of the runs, rounded down to 0.001.
double speed_target(const std::vector<const RunResult*>& a, const std::vector<const RunResult*>& b) {
    double lowest = 1;
    for (const auto* runs : {&a, &b}) {
        for (double acc : each(*runs, final_test_acc)) lowest = std::min(lowest, acc);
    }
    return std::floor(target_fraction * lowest * 1000) / 1000;
}

std::string accuracy_text(double acc) {
    char text[16];
    std::snprintf(text, sizeof text, "%.3f", acc);
    return text;
}

}  // namespace

void run_convergence(const ExperimentOptions& options, std::ostream& out) {
    const Plan plan = plan_for(options.profile);
    const auto dir = options.results / "convergence";
    std::vector<Claim> claims;
    std::vector<PlotFile> plots;
    std::string table = "| data set | init | BN | steps to the target | final test acc. | best test acc. |\n"
                        "|---|---|---|---|---|---|\n";
    std::string data_sets;
    for (const std::string dataset : {"mnist", "fashion-mnist"}) {
        const auto results = convergence_runs(dataset, options, out);
        data_sets.append(data_sets.empty() ? "" : ", ").append(dataset + " (" + split_sizes(dataset) + ")");
        PlotSpec spec{"paper-mlp on " + dataset + ": test accuracy (mean, band = min..max over seeds)", "training step",
                      "test accuracy", false, {}};
        const bool mnist = dataset == "mnist";
        std::vector<double> targets;
        for (bool gaussian : {false, true}) {
            const Arm& off = arms[2 * gaussian];
            const Arm& on = arms[2 * gaussian + 1];
            const auto off_runs = runs_of(results, off.name), on_runs = runs_of(results, on.name);
            const double target = speed_target(off_runs, on_runs);
            targets.push_back(target);
            const std::vector<double> steps[2] = {steps_to_target(off_runs, target), steps_to_target(on_runs, target)};
            const Spread final_acc[2] = {spread_of(each(off_runs, final_test_acc)), spread_of(each(on_runs, final_test_acc))};
            for (int bn = 0; bn < 2; ++bn) {
                const Arm& arm = bn ? on : off;
                const auto& runs = bn ? on_runs : off_runs;
                spec.curves.push_back(mean_curve(arm.label, runs, [](const MetricsRow& r) { return r.test_acc; }));
                table += "| " + dataset + " | " + (gaussian ? "N(0, 0.1)" : "default") + " | " + (bn ? "on" : "off") +
                         " | " + accuracy_text(target) + ": " + format_steps(steps[bn]) + " | " +
                         format_spread(final_acc[bn]) + diverged_note(runs) + " | " +
                         format_spread(spread_of(each(runs, best_test_acc))) + " |\n";
            }
            const std::string which = dataset + (gaussian ? ", N(0, 0.1) init" : "");
            claims.push_back({"BN converges faster (" + which + ")", "Ioffe & Szegedy §4.1, Fig. 1(a)",
                              mnist ? "BN ahead at every step; at 8k steps BN ≈ 0.95+, no BN ≈ 0.90 (read off the figure)"
                                    : "(MNIST only in the paper)",
                              "steps to test accuracy " + accuracy_text(target) + ": BN " + format_steps(steps[1]) +
                                  ", no BN " + format_steps(steps[0]) + "; " + mann_whitney_note(steps[1], steps[0]),
                              verdict_fewer_steps(steps[1], steps[0]), fewer_steps_rule("BN", "no BN")});
            claims.push_back({"BN ends at a higher test accuracy (" + which + ")", "Ioffe & Szegedy §4.1, Fig. 1(a)",
                              mnist ? "at 50k steps: BN ≈ 0.98, no BN ≈ 0.97" : "(MNIST only in the paper)",
                              "final: BN " + format_spread(final_acc[1]) + ", no BN " + format_spread(final_acc[0]) +
                                  "; " + welch_note(final_acc[1], final_acc[0]),
                              verdict_greater(final_acc[1], final_acc[0]), greater_rule("BN", "no BN")});
            out << which << ": steps to " << accuracy_text(target) << " BN " << format_steps(steps[1]) << ", no BN "
                << format_steps(steps[0]) << "; final test accuracy BN " << format_spread(final_acc[1]) << ", no BN "
                << format_spread(final_acc[0]) << "\n";
        }
        spec.y_range = zoomed_y_range(spec.curves);
        for (double target : targets) spec.y_range = widened_to(*spec.y_range, target);
        plots.push_back({spec, "test_accuracy_" + dataset + ".png"});
    }
    char target_rule[200];
    std::snprintf(target_rule, sizeof target_rule,
                  "%g of the lowest final test accuracy of any run of the two arms compared, rounded down to 0.001",
                  target_fraction);
    const std::string setup =
        "paper-mlp (784-100-100-100-10, sigmoid), SGD lr 0.1, batch 60, " + std::to_string(plan.steps) +
        " steps, test set every " + std::to_string(plan.eval_every) + " steps, seeds 0.." +
        std::to_string(plan.seeds - 1) + ", on " + data_sets +
        "; weights from torch's default init, and from N(0, 0.1) with zero biases (§4.1's \"small random Gaussian "
        "values\", whose scale the paper does not give). Speed is the steps to a target test accuracy, per data set and "
        "init: " + target_rule + ", so that every run that did not diverge reaches it (the step of the first "
        "evaluation at or above it; the accuracy at a fixed step compares two arms that have both plateaued).";
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
    std::vector<PlotFile> plots;
    PlotSpec specs[2];
    Spread drift[2];
    for (int bn = 0; bn < 2; ++bn) {
        const auto runs = runs_of(results, arms[bn].name);
        // One network's unit, as the paper's figure shows it: percentiles averaged over seeds
        // would smooth away the drift the claim is about.
        const RunResult& shown = *runs.front();
        specs[bn] = {"sigmoid3's input, unit 0, BN " + std::string(bn ? "on" : "off") + ", the network of " + shown.name +
                         ": percentiles over 1,000 test images",
                     "training step", "sigmoid input", false, {}};
        for (const char* p : {"p15", "p50", "p85"}) {
            Curve curve{p, {}, {}, {}, {}};
            for (const auto& row : shown.rows) {
                curve.x.push_back(static_cast<double>(row.step));
                curve.mean.push_back(row.at(p));
            }
            specs[bn].curves.push_back(std::move(curve));
        }
        // How far the percentiles move from the first evaluation to the last, averaged over the three.
        drift[bn] = spread_of(each(runs, [](const RunResult& r) {
            double sum = 0;
            for (const char* p : {"p15", "p50", "p85"}) sum += std::abs(r.last_row().at(p) - r.first_row().at(p));
            return sum / 3;
        }));
    }
    // One y-range for both, so that the two networks' drifts compare at a glance.
    std::vector<Curve> both = specs[0].curves;
    both.insert(both.end(), specs[1].curves.begin(), specs[1].curves.end());
    for (int bn = 0; bn < 2; ++bn) {
        specs[bn].y_range = zoomed_y_range(both, 0, 0);
        plots.push_back({specs[bn], std::string("sigmoid_input_bn_") + (bn ? "on" : "off") + ".png"});
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
                     plots,
                     "The default-init runs of `convergence` on mnist (results/convergence/mnist), probed at every "
                     "evaluation; the plots show seed 0's network, the claim's drift is over every seed.");
    }
}

}  // namespace xgrad
