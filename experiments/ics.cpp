// ics (Santurkar et al. 2018, §2.2, Definition 2.1, Fig. 5): internal covariate shift in the
// gradient sense, the change in a layer's gradient when the layers before it take their update on
// the same batch (probes.hpp), for paper-mlp on Fashion-MNIST without BN, with BN and with noisy
// BN, at every evaluation step before its update. Santurkar et al. find BN's networks no lower in
// it, often higher; the noise of noisy BN makes the layers' inputs shift more still.
#include <cstdio>

#include "experiments/drivers.hpp"
#include "experiments/probes.hpp"

namespace xgrad {

namespace {

struct Plan {
    std::size_t steps, eval_every, seeds;
};

Plan plan_for(Profile p) { return p == Profile::paper ? Plan{5000, 100, 5} : Plan{20, 10, 2}; }

struct Arm {
    const char* name;
    const char* label;  // in the claims' text
    Norm norm;
    bool noisy;
};
constexpr Arm arms[] = {{"no-bn", "no BN", Norm::none, false}, {"bn", "BN", Norm::batch, false}, {"noisy-bn", "noisy BN", Norm::batch, true}};

// The Linear layers that have layers before them (fc1's shift is 0 by definition).
const std::vector<std::string> layers{"fc2", "fc3", "fc4"};

struct Measure {
    const char* prefix;  // of the probe's columns
    const char* name;
    const char* png;
};
constexpr Measure measures[] = {{"ics_", "‖G - G'‖", "ics_l2.png"}, {"ics_cos_", "cos(G, G')", "ics_cos.png"}};

// A run's measure averaged over its evaluations and the layers.
double mean_over_layers(const RunResult& r, const Measure& m) {
    double sum = 0;
    for (const std::string& layer : layers) sum += mean_over_evaluations(r, m.prefix + layer);
    return sum / static_cast<double>(layers.size());
}

}  // namespace

void run_ics(const ExperimentOptions& options, std::ostream& out) {
    const Plan plan = plan_for(options.profile);
    const auto dir = options.results / "ics";
    std::vector<RunSpec> specs;
    for (const Arm& arm : arms) {
        TrainConfig c = paper_mlp_config("fashion-mnist", arm.norm);
        c.model.noisy_bn = arm.noisy;
        c.steps = plan.steps;
        c.eval_every = plan.eval_every;
        const double lr = c.lr;
        const Probe probe = [lr](Sequential<float>& model, const Batch& batch) {
            return internal_covariate_shift(model, batch, lr, layers);
        };
        for (auto& s : seeded_runs(arm.name, c, plan.seeds, probe)) specs.push_back(std::move(s));
    }
    const auto results = run_all(specs, dir, options, out);

    std::vector<PlotFile> plots;
    for (const Measure& m : measures) {
        PlotSpec spec{std::string("internal covariate shift: ") + m.name + " per layer", "training step", m.name, false, {}};
        for (const Arm& arm : arms) {
            for (const std::string& layer : layers) {
                const std::string column = m.prefix + layer;
                spec.curves.push_back(mean_curve(std::string(arm.name) + " " + layer, runs_of(results, arm.name),
                                                 [column](const MetricsRow& r) { return r.at(column); }));
            }
        }
        plots.push_back({spec, m.png});
    }

    std::string table = "| arm | layer | ‖G - G'‖ | cos(G, G') |\n|---|---|---|---|\n";
    Spread shift[std::size(arms)][std::size(measures)];
    for (std::size_t a = 0; a < std::size(arms); ++a) {
        const auto runs = runs_of(results, arms[a].name);
        for (const std::string& layer : layers) {
            table += std::string("| ") + arms[a].name + " | " + layer;
            for (const Measure& m : measures) {
                const std::string column = m.prefix + layer;
                table += " | " + format_spread(spread_of(each(runs, [&](const RunResult& r) { return mean_over_evaluations(r, column); })), 3);
            }
            table += " |\n";
        }
        for (std::size_t m = 0; m < std::size(measures); ++m) {
            shift[a][m] = spread_of(each(runs, [m](const RunResult& r) { return mean_over_layers(r, measures[m]); }));
        }
    }
    struct Row {
        const char* claim;
        const char* source;
        const char* paper;
        std::size_t higher, lower;  // the arms the claim says are higher and lower in the measure
        std::size_t measure;
    };
    const char* dln = "VGG and a 25-layer deep linear network: ICS as large or larger with BN, in both measures";
    const char* noise = "§2.1, Fig. 2: noisy BN's layer input distributions shift far more over training than BN's (the "
                        "paper plots the distributions, not this gradient measure)";
    const Row rows[] = {
        {"BN does not reduce internal covariate shift in the gradient sense: ‖G - G'‖ is larger with BN",
         "Santurkar et al. 2018, §2.2, Fig. 5", dln, 1, 0, 0},
        {"BN does not reduce internal covariate shift in the gradient sense: cos(G, G') is lower with BN",
         "Santurkar et al. 2018, §2.2, Fig. 5", dln, 0, 1, 1},
        {"Noisy BN has more internal covariate shift than BN: a larger ‖G - G'‖", "Santurkar et al. 2018, §2.1-2.2", noise, 2, 1, 0},
        {"Noisy BN has more internal covariate shift than BN: a lower cos(G, G')", "Santurkar et al. 2018, §2.1-2.2", noise, 1, 2, 1},
    };
    std::vector<Claim> claims;
    for (const Row& row : rows) {
        const Spread& higher = shift[row.higher][row.measure];
        const Spread& lower = shift[row.lower][row.measure];
        const std::string name = measures[row.measure].name;
        const char* higher_arm = arms[row.higher].label;
        const char* lower_arm = arms[row.lower].label;
        claims.push_back({row.claim, row.source, row.paper,
                          name + ": " + higher_arm + " " + format_spread(higher, 3) + ", " + lower_arm + " " +
                              format_spread(lower, 3) + "; " + welch_note(higher, lower),
                          verdict_greater(higher, lower),
                          "on " + name + " (a run's mean over its evaluations and layers fc2..fc4): " +
                              greater_rule(higher_arm, lower_arm)});
    }
    out << "‖G - G'‖: no BN " << format_spread(shift[0][0], 3) << ", BN " << format_spread(shift[1][0], 3) << ", noisy BN "
        << format_spread(shift[2][0], 3) << "\n";
    char setup[700];
    std::snprintf(setup, sizeof setup,
                  "paper-mlp on Fashion-MNIST, SGD lr 0.1, batch 60, %zu steps, seeds 0..%zu, torch's default init; noisy "
                  "BN as in noisy-bn. Every %zu steps, before the step's update and on its batch: for each of fc2, fc3, fc4, "
                  "G = the gradient of its weight and bias, G' = the same once every earlier parameter (the earlier Linear "
                  "and BN layers) has taken the step w - 0.1 g, all forwards in training mode with that step's noise.",
                  plan.steps, plan.seeds - 1, plan.eval_every);
    if (options.writes_report()) {
        write_claims(dir, "ics", "Internal covariate shift in the gradient sense (Santurkar et al. 2018)", options,
                     claims, {table}, plots, setup);
    }
}

}  // namespace xgrad
