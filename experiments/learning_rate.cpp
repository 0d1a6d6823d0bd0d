// learning-rate: multiples of a base learning rate, with and without BN, for paper-mlp (SGD, base
// 0.1) and seed-cnn (SGD with momentum 0.9, base 0.01), both on Fashion-MNIST. Per (model, BN,
// multiplier): steps to reach the target test accuracy, best test accuracy, and divergence (a
// non-finite loss or one above 1e3 ends the run as diverged); and, as the paper's Fig. 3 table,
// the steps to no BN x1's maximum accuracy of no BN at x1 and at its best multiplier against BN at
// x1, x5 and x30.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <stdexcept>

#include "experiments/drivers.hpp"
#include "experiments/steps_to_target.hpp"

namespace xgrad {

namespace {

struct ModelPlan {
    std::string model;
    double base_lr, momentum;
    std::size_t steps, eval_every, eval_samples, seeds;
};

struct Plan {
    std::vector<double> multipliers;
    double target;
    std::vector<ModelPlan> models;
};

// Every multiplier list holds 1, 5 and 30, the claims' reference points. Evaluations come often
// enough that the steps to the target tell x1 from x5 apart (BN reaches 0.80 within a few
// hundred steps).
Plan plan_for(Profile p) {
    if (p == Profile::paper) {
        return {{1, 5, 30, 100}, 0.80, {{"paper-mlp", 0.1, 0.0, 10000, 50, 0, 5}, {"seed-cnn", 0.01, 0.9, 300, 10, 2000, 5}}};
    }
    return {{1, 5, 30}, 0.5, {{"paper-mlp", 0.1, 0.0, 40, 20, 0, 2}, {"seed-cnn", 0.01, 0.9, 6, 3, 100, 1}}};
}

std::string arm_name(bool bn, double multiplier) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "bn-%s-x%g", bn ? "on" : "off", multiplier);
    return buf;
}

std::string multiplier_text(double multiplier) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "x%g", multiplier);
    return buf;
}

// Every seed trained without diverging and reached the target.
bool all_reach(const std::vector<const RunResult*>& runs, double target) {
    return std::isfinite(mean_steps(steps_to_target(runs, target)));
}

// The highest multiplier at which every seed reaches the target; 0 if none.
double highest_training(const std::vector<RunResult>& results, bool bn, const Plan& plan) {
    double highest = 0;
    for (double m : plan.multipliers) {
        if (all_reach(runs_of(results, arm_name(bn, m)), plan.target)) highest = m;
    }
    return highest;
}

// The multiplier whose seeds need the fewest steps to `target` on average (an unreached seed
// counting as infinite); the first such when they tie.
double best_multiplier(const std::vector<RunResult>& results, bool bn, const Plan& plan, double target) {
    double best = plan.multipliers.front(), fewest = std::numeric_limits<double>::infinity();
    for (double m : plan.multipliers) {
        const double steps = mean_steps(steps_to_target(runs_of(results, arm_name(bn, m)), target));
        if (steps < fewest) {
            fewest = steps;
            best = m;
        }
    }
    return best;
}

// The target of the paper's Fig. 3 table, "the maximum accuracy of Inception (72.2%)": the
// baseline without BN at the base rate, its best test accuracy, the lowest over its seeds rounded
// down to 0.001, so that every seed of the baseline reaches it, as Inception did at its end. A
// seed that diverged counts as never reaching any target, so it does not set this one; when every
// seed diverged there is no baseline maximum, and the plan's target stands in.
double baseline_maximum(const std::vector<RunResult>& results, const Plan& plan) {
    double lowest = std::numeric_limits<double>::infinity();
    for (const RunResult* r : runs_of(results, arm_name(false, 1))) {
        if (!r->diverged()) lowest = std::min(lowest, best_test_acc(*r));
    }
    return std::isfinite(lowest) ? std::floor(1000 * lowest) / 1000 : plan.target;
}

// The runs of one model: BN off then on, each multiplier, its seeds.
std::vector<RunSpec> runs_of_model(const Plan& plan, const ModelPlan& mp) {
    std::vector<RunSpec> specs;
    for (bool bn : {false, true}) {
        for (double m : plan.multipliers) {
            TrainConfig c = paper_mlp_config("fashion-mnist", norm_from_bn(bn));
            c.model.name = mp.model;
            if (mp.model == "seed-cnn") c.batch = 64;
            c.lr = mp.base_lr * m;
            c.momentum = mp.momentum;
            c.steps = mp.steps;
            c.eval_every = mp.eval_every;
            c.eval_samples = mp.eval_samples;
            for (auto& s : seeded_runs(arm_name(bn, m), c, mp.seeds)) specs.push_back(std::move(s));
        }
    }
    return specs;
}

// A row of a table of arms: steps to the target (mean, then median and range), best test accuracy,
// diverged seeds.
std::string arm_row(const std::string& head, const std::vector<const RunResult*>& runs, double target) {
    const std::vector<double> steps = steps_to_target(runs, target);
    std::size_t diverged = 0;
    for (const RunResult* r : runs) diverged += r->diverged();
    return "| " + head + " | " + format_step_count(mean_steps(steps)) + " | " + format_steps(steps) + " | " +
           format_spread(spread_of(each(runs, best_test_acc))) + " | " + std::to_string(diverged) + " of " +
           std::to_string(runs.size()) + " |\n";
}

constexpr const char* arm_columns = " | steps to target (mean) | steps to target | best test acc. | diverged |\n";

}  // namespace

std::vector<RunSpec> learning_rate_runs(Profile profile, const std::string& model) {
    const Plan plan = plan_for(profile);
    for (const ModelPlan& mp : plan.models) {
        if (mp.model == model) return runs_of_model(plan, mp);
    }
    throw std::invalid_argument("learning-rate trains paper-mlp and seed-cnn, not " + model);
}

void run_learning_rate(const ExperimentOptions& options, std::ostream& out) {
    const Plan plan = plan_for(options.profile);
    const auto dir = options.results / "learning-rate";
    std::vector<Claim> claims;
    std::vector<std::string> tables;
    std::vector<PlotFile> plots;
    char target_text[16];
    std::snprintf(target_text, sizeof target_text, "%.2f", plan.target);
    std::string setup = "Fashion-MNIST; learning rate = base x multiplier; target test accuracy " +
                        std::string(target_text) +
                        " in the table of every arm and for which rates train at all; in the Fig. 3 table and its two "
                        "step claims, as the paper's 72.2% is Inception's maximum, the maximum of no BN at x1 (the lowest "
                        "over its seeds of each one's best test accuracy). Steps to a target: the first evaluation at or "
                        "above it; a seed that never reaches it, or diverges, counts as infinite, so a mean over seeds is "
                        "infinite when one is: \"never\".";
    for (const ModelPlan& mp : plan.models) {
        const auto results = run_all(runs_of_model(plan, mp), dir / mp.model, options, out);
        const std::string heading = "**" + mp.model + "** (base lr " + std::to_string(mp.base_lr).substr(0, 4) +
                                    (mp.momentum > 0 ? ", momentum 0.9" : "") + ", " + std::to_string(mp.steps) + " steps";
        std::string table = heading + ")\n\n| BN | lr multiplier" + arm_columns + "|---|---|---|---|---|---|\n";
        PlotSpec best_spec{mp.model + ": best test accuracy against learning-rate multiplier", "learning-rate multiplier",
                           "best test accuracy (0 when diverged at once)", true, {}};
        PlotSpec curves_spec{mp.model + ": test accuracy per arm (mean, band = min..max over seeds)", "training step",
                             "test accuracy", false, {}};
        for (bool bn : {false, true}) {
            Curve curve{std::string("BN ") + (bn ? "on" : "off"), {}, {}, {}, {}};
            for (double m : plan.multipliers) {
                const auto runs = runs_of(results, arm_name(bn, m));
                table += arm_row(std::string(bn ? "on" : "off") + " | " + multiplier_text(m), runs, plan.target);
                append_point(curve, m, spread_of(each(runs, best_test_acc)));
                curves_spec.curves.push_back(mean_curve(std::string(bn ? "BN " : "no BN ") + multiplier_text(m), runs,
                                                        [](const MetricsRow& r) { return r.test_acc; }));
            }
            best_spec.curves.push_back(std::move(curve));
        }
        curves_spec.y_range = widened_to(zoomed_y_range(curves_spec.curves), plan.target);
        tables.push_back(table);

        // The paper's Fig. 3 table: no BN at its best rate against BN at x1, x5 and x30, in steps to
        // the baseline's maximum.
        const double fig3_target = baseline_maximum(results, plan);
        char fig3_target_text[16];
        std::snprintf(fig3_target_text, sizeof fig3_target_text, "%.3f", fig3_target);
        const double plain_best = best_multiplier(results, false, plan, fig3_target);
        const double bn_best = best_multiplier(results, true, plan, fig3_target);
        const auto plain_best_runs = runs_of(results, arm_name(false, plain_best));
        std::string fig3 = heading + ", as the paper's Fig. 3: steps to " + fig3_target_text +
                           ", the maximum test accuracy of no BN at x1)\n\n| model" + arm_columns + "|---|---|---|---|---|\n";
        fig3 += arm_row("no BN at x1", runs_of(results, arm_name(false, 1)), fig3_target);
        fig3 += arm_row("no BN at its best, " + multiplier_text(plain_best), plain_best_runs, fig3_target);
        for (double m : {1.0, 5.0, 30.0}) fig3 += arm_row("BN " + multiplier_text(m), runs_of(results, arm_name(true, m)), fig3_target);
        tables.push_back(fig3);

        plots.push_back({curves_spec, "test_accuracy_" + mp.model + ".png"});
        plots.push_back({best_spec, "best_accuracy_" + mp.model + ".png"});

        const double bn_high = highest_training(results, true, plan), plain_high = highest_training(results, false, plan);
        char measured[200];
        std::snprintf(measured, sizeof measured,
                      "highest multiplier at which every seed (n=%zu) reaches %.2f: BN x%g, no BN x%g", mp.seeds,
                      plan.target, bn_high, plain_high);
        claims.push_back({"BN allows a much higher learning rate (" + mp.model + ")", "Ioffe & Szegedy §4.2, Fig. 3",
                          "BN-x5 and BN-x30 train (Inception, lr x5 and x30)", measured,
                          all_reach(runs_of(results, arm_name(true, 30)), plan.target) &&
                                  !all_reach(runs_of(results, arm_name(false, 30)), plan.target)
                              ? "reproduced"
                          : bn_high > plain_high            ? "partly"
                                                            : "not reproduced",
                          "reproduced when with BN every seed reaches the target at x30 and without BN some seed "
                          "does not; partly when BN's highest such multiplier is higher than no-BN's"});

        const std::string to_target = "steps to " + std::string(fig3_target_text) + " (no BN x1's maximum): ";
        const auto bn_steps = [&](double m) { return steps_to_target(runs_of(results, arm_name(true, m)), fig3_target); };
        const std::vector<double> x1 = bn_steps(1), x5 = bn_steps(5), at_best = bn_steps(bn_best);
        const std::vector<double> plain = steps_to_target(plain_best_runs, fig3_target);
        claims.push_back({"With BN, a 5x higher learning rate reaches no BN's maximum accuracy in fewer steps (" + mp.model + ")",
                          "Ioffe & Szegedy §4.2, Fig. 3", "72.2% reached in 2.1M steps by BN-x5 against 13.3M by BN-Baseline",
                          to_target + "BN x5 " + format_steps(x5) + ", BN x1 " + format_steps(x1) + "; " +
                              mann_whitney_note(x5, x1),
                          verdict_fewer_steps(x5, x1), fewer_steps_rule("BN x5", "BN x1")});
        claims.push_back({"BN at its best learning rate reaches no BN's maximum accuracy in fewer steps than no BN at its best (" +
                              mp.model + ")",
                          "Ioffe & Szegedy §4.2, Fig. 3",
                          "72.2% reached in 2.1M steps by BN-x5 against 31.0M by Inception: 14x fewer",
                          to_target + "BN at its best (" + multiplier_text(bn_best) + ") " + format_steps(at_best) +
                              ", no BN at its best (" + multiplier_text(plain_best) + ") " + format_steps(plain) + "; " +
                              mann_whitney_note(at_best, plain),
                          verdict_fewer_steps(at_best, plain),
                          fewer_steps_rule("BN at its best", "no BN at its best") +
                              " (each arm's best multiplier: the one with the fewest mean steps)"});
        out << mp.model << ": highest multiplier reaching " << target_text << ": BN x" << bn_high << ", no BN x" << plain_high
            << "; steps to " << fig3_target_text << ": BN x1 " << format_steps(x1) << ", x5 " << format_steps(x5) << ", no BN at its best "
            << format_steps(plain) << "\n";
        setup += " " + mp.model + ": " + std::to_string(mp.seeds) + " seeds, " + std::to_string(mp.steps) +
                 " steps, test accuracy every " + std::to_string(mp.eval_every) + " steps on " +
                 (mp.eval_samples ? std::to_string(mp.eval_samples) + " test images." : std::string("the test set."));
    }
    if (options.writes_report()) {
        write_claims(dir, "learning-rate", "Higher learning rates with BN (paper §4.2)", options, claims, tables,
                     plots, setup);
    }
}

}  // namespace xgrad
