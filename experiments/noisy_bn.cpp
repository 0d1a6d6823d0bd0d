// noisy-bn (Santurkar et al. 2018, "How Does Batch Normalization Help Optimization?"): paper-mlp on
// Fashion-MNIST without BN, with BN, and with BN followed by DistributionNoise (noise that makes
// each layer's input distribution unstable on purpose). Every evaluation also measures the loss
// landscape along the gradient at 1/2 to 4 times the learning rate (probes.hpp).
#include <cstdio>

#include "experiments/drivers.hpp"
#include "experiments/probes.hpp"

namespace xgrad {

namespace {

struct Plan {
    std::size_t steps, eval_every, seeds;
};

Plan plan_for(Profile p) { return p == Profile::paper ? Plan{10000, 250, 3} : Plan{40, 20, 2}; }

struct Arm {
    const char* name;
    Norm norm;
    bool noisy;
};
constexpr Arm arms[] = {{"no-bn", Norm::none, false}, {"bn", Norm::batch, false}, {"noisy-bn", Norm::batch, true}};

// A run's mean of a landscape column over its evaluations.
double mean_over_training(const RunResult& r, const std::string& column) {
    r.first_row();  // a run without evaluations is an error, not a 0/0
    double sum = 0;
    for (const auto& row : r.rows) sum += row.at(column);
    return sum / static_cast<double>(r.rows.size());
}

}  // namespace

void run_noisy_bn(const ExperimentOptions& options, std::ostream& out) {
    const Plan plan = plan_for(options.profile);
    const auto dir = options.results / "noisy-bn";
    std::vector<RunSpec> specs;
    for (const Arm& arm : arms) {
        TrainConfig c = paper_mlp_config("fashion-mnist", arm.norm);
        c.model.noisy_bn = arm.noisy;
        c.steps = plan.steps;
        c.eval_every = plan.eval_every;
        const double lr = c.lr;
        const Probe probe = [lr](Sequential<float>& model, const Batch& batch) {
            return landscape_along_gradient(model, batch, lr);
        };
        for (auto& s : seeded_runs(arm.name, c, plan.seeds, probe)) specs.push_back(std::move(s));
    }
    const auto results = run_all(specs, dir, options, out);

    struct Measure {
        const char* column;
        const char* title;
    };
    const Measure measures[] = {{"loss_range", "range of the loss along the gradient (lr x 0.5 .. 4)"},
                                {"beta_smoothness", "effective beta-smoothness along the gradient"},
                                {"grad_change", "largest l2 change of the gradient along it"}};
    std::vector<std::string> plots;
    PlotSpec accuracy{"paper-mlp on Fashion-MNIST: test accuracy", "training step", "test accuracy", false, {}};
    for (const Arm& arm : arms) {
        accuracy.curves.push_back(mean_curve(arm.name, runs_of(results, arm.name), [](const MetricsRow& r) { return r.test_acc; }));
    }
    if (options.writes_report()) plot(accuracy, dir / "test_accuracy.png");
    plots.push_back("test_accuracy.png");
    std::string table = "| arm | final test acc. | loss range | beta-smoothness | gradient change |\n|---|---|---|---|---|\n";
    Spread final_acc[3], landscape[3][3];
    for (int a = 0; a < 3; ++a) {
        const auto runs = runs_of(results, arms[a].name);
        final_acc[a] = spread_of(each(runs, final_test_acc));
        table += std::string("| ") + arms[a].name + " | " + format_spread(final_acc[a]) + diverged_note(runs);
        for (int m = 0; m < 3; ++m) {
            const std::string column = measures[m].column;
            landscape[a][m] = spread_of(each(runs, [&](const RunResult& r) { return mean_over_training(r, column); }));
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
        const std::string png = std::string(m.column) + ".png";
        if (options.writes_report()) plot(spec, dir / png);
        plots.push_back(png);
    }
    const double gap_to_bn = std::abs(final_acc[2].mean - final_acc[1].mean);
    const std::string smoother_rule =
        greater_rule("no BN's value (the mean over a run's evaluations, then over seeds)", "BN's");
    const std::vector<Claim> claims{
        {"BN with injected distribution noise trains about as well as BN: the stability of layer input "
         "distributions is not what makes BN work",
         "Santurkar et al. 2018, §2, Fig. 2", "VGG on CIFAR-10: \"noisy\" BN close to BN, both ahead of no BN",
         "final test acc.: no BN " + format_spread(final_acc[0]) + ", BN " + format_spread(final_acc[1]) +
             ", noisy BN " + format_spread(final_acc[2]),
         gap_to_bn <= std::max(0.01, final_acc[1].sd + final_acc[2].sd) && final_acc[2].mean > final_acc[0].mean
             ? "reproduced"
         : final_acc[2].mean > final_acc[0].mean ? "partly"
                                                 : "not reproduced",
         "reproduced when noisy BN's mean is within max(1 point, the two sds) of BN's and above no BN's; partly when "
         "only above no BN's"},
        {"BN makes the loss change less along the gradient", "Santurkar et al. 2018, §3.1, Fig. 4(a)",
         "VGG: a much narrower range of loss with BN",
         "loss range: no BN " + format_spread(landscape[0][0], 3) + ", BN " + format_spread(landscape[1][0], 3) + "; " +
             welch_note(landscape[0][0], landscape[1][0]),
         verdict_greater(landscape[0][0], landscape[1][0]), smoother_rule},
        {"BN makes the gradient more predictive (smaller effective beta-smoothness)", "Santurkar et al. 2018, §3.1, Fig. 4(c)",
         "VGG: beta-smoothness several times smaller with BN",
         "beta-smoothness: no BN " + format_spread(landscape[0][1], 3) + ", BN " + format_spread(landscape[1][1], 3) +
             "; " + welch_note(landscape[0][1], landscape[1][1]),
         verdict_greater(landscape[0][1], landscape[1][1]), smoother_rule},
    };
    out << "final test accuracy: no BN " << format_spread(final_acc[0]) << ", BN " << format_spread(final_acc[1])
        << ", noisy BN " << format_spread(final_acc[2]) << "\n";
    char setup[400];
    std::snprintf(setup, sizeof setup,
                  "paper-mlp on Fashion-MNIST, SGD lr 0.1, batch 60, %zu steps, seeds 0..%zu. Noise after every BN: per "
                  "unit and step mu ~ U(-0.5, 0.5), sigma ~ U(1, 1.25); per sample m ~ U(mu - 0.1, mu + 0.1), "
                  "s ~ N(sigma, 0.1); a <- s a + m. Landscape every %zu steps on that step's batch.",
                  plan.steps, plan.seeds - 1, plan.eval_every);
    if (options.writes_report()) {
        write_claims(dir, "noisy-bn", "Noisy BN and the loss landscape (Santurkar et al. 2018)", options, claims,
                     {table}, plots, setup);
    }
}

}  // namespace xgrad
