// noisy-bn (Santurkar et al. 2018, "How Does Batch Normalization Help Optimization?"): paper-mlp on
// Fashion-MNIST without BN, with BN, and with BN followed by DistributionNoise (noise that makes
// each layer's input distribution unstable on purpose), judged on speed and final accuracy; and
// the loss landscape along the gradient (probes.hpp), measured before each evaluation step's update
// on that step's batch, with and without BN under torch's default initialization and under
// weights from N(0, 0.5), where BN multiplies small pre-activations' gradients by gamma / sigma.
//
// The landscape's step sizes are fractions of each arm's own largest stable learning rate, found
// here by a short search: the largest multiple of 0.1 at which every search seed reaches the
// target test accuracy without diverging. The arms themselves all train at 0.1.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <optional>

#include "experiments/drivers.hpp"
#include "experiments/probes.hpp"
#include "experiments/steps_to_target.hpp"

namespace xgrad {

namespace {

struct Plan {
    std::size_t steps, eval_every, seeds;
    double target;  // test accuracy: the speed row's target and the search's bar for "stable"
    std::size_t search_steps, search_eval_every, search_seeds;
    std::vector<double> search_multipliers;  // of the training learning rate, 1 first
};

Plan plan_for(Profile p) {
    if (p == Profile::paper) return {10000, 100, 5, 0.80, 3000, 100, 2, {1, 3, 10, 30, 100, 300, 1000}};
    return {40, 20, 2, 0.30, 10, 10, 1, {1, 10}};
}

struct Arm {
    const char* name;
    Norm norm;
    bool noisy;
    std::optional<double> init_sigma;  // torch's default init when empty
};
constexpr double small_init_sigma = 0.5;
const Arm arms[] = {{"no-bn", Norm::none, false, std::nullopt},
                    {"bn", Norm::batch, false, std::nullopt},
                    {"noisy-bn", Norm::batch, true, std::nullopt},
                    {"no-bn-sigma0.5", Norm::none, false, small_init_sigma},
                    {"bn-sigma0.5", Norm::batch, false, small_init_sigma}};

// The landscape's step sizes as fractions of the arm's largest stable learning rate: an 8-fold
// range up to it, as Santurkar et al.'s 0.05 .. 0.4.
const std::vector<double> step_fractions{0.125, 0.25, 0.5, 1.0};

// Where the margin of "about as well" lies: noisy BN's final accuracy at most this far below BN's,
// its steps to the target at most this many times BN's.
constexpr double accuracy_margin = 0.01;
constexpr double steps_margin = 1.5;

TrainConfig arm_config(const Arm& arm, std::size_t steps, std::size_t eval_every) {
    TrainConfig c = paper_mlp_config("fashion-mnist", arm.norm);
    c.model.noisy_bn = arm.noisy;
    c.model.init_sigma = arm.init_sigma;
    c.steps = steps;
    c.eval_every = eval_every;
    return c;
}

std::string search_arm(const Arm& arm, double multiplier) {
    char name[64];
    std::snprintf(name, sizeof name, "stability/%s/x%g", arm.name, multiplier);
    return name;
}

// The largest multiplier of the search at which every seed reaches the target; the first (1) when
// none does, so that the landscape still has a step size.
double largest_stable_multiplier(const std::vector<RunResult>& search, const Arm& arm, const Plan& plan) {
    double largest = plan.search_multipliers.front();
    for (double m : plan.search_multipliers) {
        const auto steps = steps_to_target(runs_of(search, search_arm(arm, m)), plan.target);
        if (std::all_of(steps.begin(), steps.end(), [](double s) { return std::isfinite(s); })) largest = std::max(largest, m);
    }
    return largest;
}

// Both tests passed: reproduced; one: partly; neither: not reproduced.
std::string verdict_of_two(bool first, bool second) {
    return first && second ? "reproduced" : first || second ? "partly" : "not reproduced";
}

Spread shifted(Spread s, double by) {
    s.mean += by;
    s.min += by;
    s.max += by;
    return s;
}

struct Measure {
    const char* column;
    const char* title;
    bool bn_smaller;  // BN's smoother landscape shows as a smaller value (else a larger one)
};
const Measure measures[] = {
    {"loss_range", "range of the loss along the gradient", true},
    {"first_order_error", "relative first-order error of the loss along the gradient", true},
    {"beta_smoothness", "effective beta-smoothness along the gradient", true},
    {"gradient_cosine", "lowest cos(g, g_eta) along the gradient", false},
};

// The seed-mean loss at each evaluation, shaded from the seed-mean lowest to highest loss along the
// gradient (Santurkar et al.'s Fig. 4(a)).
Curve loss_band(const std::string& label, const std::vector<const RunResult*>& runs) {
    Curve band = mean_curve(label, runs, [](const MetricsRow& r) { return r.at("loss"); });
    band.lo = mean_curve(label, runs, [](const MetricsRow& r) { return r.at("loss_min"); }).mean;
    band.hi = mean_curve(label, runs, [](const MetricsRow& r) { return r.at("loss_max"); }).mean;
    return band;
}

}  // namespace

void run_noisy_bn(const ExperimentOptions& options, std::ostream& out) {
    const Plan plan = plan_for(options.profile);
    const auto dir = options.results / "noisy-bn";
    std::vector<RunSpec> search_specs;
    for (const Arm& arm : arms) {
        for (double m : plan.search_multipliers) {
            TrainConfig c = arm_config(arm, plan.search_steps, plan.search_eval_every);
            c.lr *= m;
            for (auto& s : seeded_runs(search_arm(arm, m), c, plan.search_seeds)) search_specs.push_back(std::move(s));
        }
    }
    const auto search = run_all(search_specs, dir, options, out);

    constexpr std::size_t arm_count = std::size(arms);
    double stable_multiplier[arm_count], stable_lr[arm_count];
    std::vector<RunSpec> specs;
    for (std::size_t a = 0; a < arm_count; ++a) {
        const TrainConfig c = arm_config(arms[a], plan.steps, plan.eval_every);
        stable_multiplier[a] = largest_stable_multiplier(search, arms[a], plan);
        stable_lr[a] = c.lr * stable_multiplier[a];
        const double lr = stable_lr[a];
        const Probe probe = [lr](Sequential<float>& model, const Batch& batch) {
            return landscape_along_gradient(model, batch, lr, step_fractions);
        };
        // The probe's step sizes name the runs' directory: a run measured with others is never reused.
        char arm_dir[96];
        std::snprintf(arm_dir, sizeof arm_dir, "%s/landscape-lr%g", arms[a].name, lr);
        for (auto& s : seeded_runs(arm_dir, c, plan.seeds, probe)) specs.push_back(std::move(s));
    }
    const auto results = run_all(specs, dir, options, out);

    std::vector<PlotFile> plots;
    PlotSpec accuracy{"paper-mlp on Fashion-MNIST: test accuracy", "training step", "test accuracy", false, {}};
    for (const Arm& arm : arms) {
        accuracy.curves.push_back(mean_curve(arm.name, runs_of(results, arm.name), [](const MetricsRow& r) { return r.test_acc; }));
    }
    plots.push_back({accuracy, "test_accuracy.png"});

    std::string table =
        "| arm | largest stable lr | final test acc. | steps to target | loss range | first-order error | beta-smoothness | "
        "lowest cos(g, g_eta) |\n|---|---|---|---|---|---|---|---|\n";
    Spread final_acc[arm_count], landscape[arm_count][std::size(measures)];
    std::vector<double> steps[arm_count];
    for (std::size_t a = 0; a < arm_count; ++a) {
        const auto runs = runs_of(results, arms[a].name);
        final_acc[a] = spread_of(each(runs, final_test_acc));
        steps[a] = steps_to_target(runs, plan.target);
        // At the top of the search's grid the largest stable learning rate is only a lower bound.
        char lr[32];
        std::snprintf(lr, sizeof lr, "%s%g", stable_multiplier[a] == plan.search_multipliers.back() ? ">= " : "", stable_lr[a]);
        table += std::string("| ") + arms[a].name + " | " + lr + " | " + format_spread(final_acc[a]) + diverged_note(runs) +
                 " | " + format_steps(steps[a]);
        for (std::size_t m = 0; m < std::size(measures); ++m) {
            const std::string column = measures[m].column;
            landscape[a][m] = spread_of(each(runs, [&](const RunResult& r) { return mean_over_evaluations(r, column); }));
            table += " | " + format_spread(landscape[a][m], 3);
        }
        table += " |\n";
    }
    for (const Measure& m : measures) {
        PlotSpec spec{m.title, "training step", m.column, false, {}};
        for (const Arm& arm : arms) {
            const std::string column = m.column;
            spec.curves.push_back(mean_curve(arm.name, runs_of(results, arm.name), [column](const MetricsRow& r) { return r.at(column); }));
        }
        plots.push_back({spec, std::string(m.column) + ".png"});
    }
    struct Regime {
        std::size_t no_bn, bn;
        const char* name;
        const char* png;
    };
    const Regime regimes[] = {{0, 1, "torch's default init", "loss_band.png"}, {3, 4, "weights from N(0, 0.5)", "loss_band_sigma0.5.png"}};
    for (const Regime& r : regimes) {
        PlotSpec band{std::string("loss along the gradient, min..max per step (") + r.name + ")", "training step", "loss", false, {}};
        for (std::size_t a : {r.no_bn, r.bn}) band.curves.push_back(loss_band(arms[a].name, runs_of(results, arms[a].name)));
        plots.push_back({band, r.png});
    }

    // Claim 13, final accuracy: non-inferiority to BN (Welch on noisy BN's accuracies shifted up by
    // the margin) and superiority to no BN.
    const WelchTest acc_vs_bn = welch_greater(shifted(final_acc[2], accuracy_margin), final_acc[1]);
    const WelchTest acc_vs_none = welch_greater(final_acc[2], final_acc[0]);
    // Speed: the same two questions on steps to the target, by exact Mann-Whitney tests.
    std::vector<double> bn_steps_with_margin = steps[1];
    for (double& s : bn_steps_with_margin) s *= steps_margin;
    const double speed_vs_bn = mann_whitney_greater(bn_steps_with_margin, steps[2]);
    const double speed_vs_none = mann_whitney_greater(steps[0], steps[2]);
    char level[16], target[16], margins[96];
    std::snprintf(level, sizeof level, "%g", significance_level);
    std::snprintf(target, sizeof target, "%.2f", plan.target);
    std::snprintf(margins, sizeof margins, "%g point(s)", accuracy_margin * 100);
    std::vector<Claim> claims{
        {"BN with injected distribution noise reaches about BN's final accuracy: the stability of layer input "
         "distributions is not what makes BN work",
         "Santurkar et al. 2018, §2.1, Fig. 2", "VGG on CIFAR-10: \"noisy\" BN close to BN, both ahead of no BN",
         "final test acc.: no BN " + format_spread(final_acc[0]) + ", BN " + format_spread(final_acc[1]) + ", noisy BN " +
             format_spread(final_acc[2]) + "; noisy BN not below BN by " + margins + ": Welch " + format_p(acc_vs_bn.p) +
             "; above no BN: Welch " + format_p(acc_vs_none.p),
         verdict_of_two(acc_vs_bn.p < significance_level, acc_vs_none.p < significance_level),
         std::string("reproduced when Welch's one-sided t-test at p < ") + level + " finds noisy BN's mean final accuracy plus " +
             margins + " above BN's (noisy BN is not worse than BN by more than the margin) and finds noisy BN's mean above "
             "no BN's; partly when one of the two holds"},
        {"BN with injected distribution noise trains about as fast as BN", "Santurkar et al. 2018, §2.1, Fig. 2",
         "VGG on CIFAR-10: noisy BN's training curve close to BN's, both ahead of no BN",
         std::string("steps to test accuracy ") + target + ": no BN " + format_steps(steps[0]) + ", BN " + format_steps(steps[1]) +
             ", noisy BN " + format_steps(steps[2]) + "; noisy BN below 1.5 x BN's: Mann-Whitney " + format_p(speed_vs_bn) +
             "; below no BN's: Mann-Whitney " + format_p(speed_vs_none),
         verdict_of_two(speed_vs_bn < significance_level, speed_vs_none < significance_level),
         std::string("reproduced when the exact one-sided Mann-Whitney test at p < ") + level +
             " finds noisy BN's steps to the target (never reached: infinite) below 1.5 times BN's (noisy BN is not slower "
             "than BN by more than half) and below no BN's; partly when one of the two holds"},
    };
    // Claims 14 and 15, a row per measure and initialization.
    const char* claim_of[] = {"BN makes the loss change less along the gradient", "BN keeps the loss closer to its first-order prediction",
                              "BN makes the gradient more predictive (smaller effective beta-smoothness)",
                              "BN keeps the gradient's direction along the step (higher cos(g, g_eta))"};
    const char* figure_of[] = {"Fig. 4(a)", "Fig. 4(a), scale-free", "Fig. 4(c)", "Fig. 4(b), scale-free"};
    const char* paper_of[] = {"VGG: a much narrower range of loss with BN", "(not in the paper: the loss range relative to the step)",
                              "VGG: beta-smoothness several times smaller with BN",
                              "(not in the paper: the gradient change as an angle)"};
    for (const Regime& r : regimes) {
        char lrs[96];
        std::snprintf(lrs, sizeof lrs, "; steps up to no BN's largest stable lr %g, BN's %g", stable_lr[r.no_bn], stable_lr[r.bn]);
        for (std::size_t m = 0; m < std::size(measures); ++m) {
            const Spread& smoother = measures[m].bn_smaller ? landscape[r.no_bn][m] : landscape[r.bn][m];
            const Spread& other = measures[m].bn_smaller ? landscape[r.bn][m] : landscape[r.no_bn][m];
            claims.push_back(
                {std::string(claim_of[m]) + " (" + r.name + ")", std::string("Santurkar et al. 2018, §3.1, ") + figure_of[m],
                 paper_of[m],
                 std::string(measures[m].column) + ": no BN " + format_spread(landscape[r.no_bn][m], 3) + ", BN " +
                     format_spread(landscape[r.bn][m], 3) + "; " + welch_note(smoother, other) + lrs,
                 verdict_greater(smoother, other),
                 std::string("on ") + measures[m].column + " (a run's mean over its evaluations): " +
                     greater_rule(measures[m].bn_smaller ? "no BN" : "BN", measures[m].bn_smaller ? "BN" : "no BN")});
        }
    }
    out << "final test accuracy: no BN " << format_spread(final_acc[0]) << ", BN " << format_spread(final_acc[1])
        << ", noisy BN " << format_spread(final_acc[2]) << "\n";
    std::string multipliers;
    for (double m : plan.search_multipliers) {
        char one[16];
        std::snprintf(one, sizeof one, "%s%g", multipliers.empty() ? "" : ", ", m);
        multipliers += one;
    }
    char setup[1200];
    std::snprintf(setup, sizeof setup,
                  "paper-mlp on Fashion-MNIST, SGD lr 0.1, batch 60, %zu steps, seeds 0..%zu, test set every %zu steps; "
                  "torch's default init, and weights from N(0, %g) with biases 0 (the -sigma0.5 arms). Noise after every "
                  "BN: per unit and step mu ~ U(-0.5, 0.5), sigma ~ U(1, 1.25); per sample m ~ U(mu - 0.1, mu + 0.1), "
                  "s ~ N(sigma, 0.1); a <- s a + m. Landscape at every evaluation step, before its update, on its batch: "
                  "steps of 1/8, 1/4, 1/2 and 1 times the arm's largest stable lr, the largest of 0.1 x {%s} at which "
                  "each of %zu search runs (%zu steps, seeds 0..%zu) reaches test accuracy %.2f without diverging (x1 "
                  "when none does). A run's landscape figure is its mean over evaluations.",
                  plan.steps, plan.seeds - 1, plan.eval_every, small_init_sigma,
                  multipliers.c_str(),
                  plan.search_seeds, plan.search_steps, plan.search_seeds - 1, plan.target);
    if (options.writes_report()) {
        write_claims(dir, "noisy-bn", "Noisy BN and the loss landscape (Santurkar et al. 2018)", options, claims,
                     {table}, plots, setup);
    }
}

}  // namespace xgrad
