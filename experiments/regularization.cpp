// regularization: paper-mlp on MNIST's training set (60,000 images), BN
// on/off x Dropout 0 / 0.2 after each hidden sigmoid. Every evaluation also measures the
// accuracy on the whole training set in eval mode; the train/test gap is the difference.
#include <cstdio>

#include "experiments/dataset.hpp"
#include "experiments/drivers.hpp"
#include "experiments/evaluation.hpp"

namespace xgrad {

namespace {

struct Plan {
    std::size_t steps, eval_every, seeds;
};

Plan plan_for(Profile p) { return p == Profile::paper ? Plan{20000, 1000, 3} : Plan{40, 20, 2}; }

constexpr double dropout_p = 0.2;

std::string arm_name(bool bn, bool dropout) {
    return std::string("bn-") + (bn ? "on" : "off") + (dropout ? "-dropout" : "");
}

double final_gap(const RunResult& r) { return r.last_row().at("train_eval_acc") - r.last_row().test_acc; }

}  // namespace

void run_regularization(const ExperimentOptions& options, std::ostream& out) {
    const Plan plan = plan_for(options.profile);
    const auto dir = options.results / "regularization";
    const auto train_set = std::make_shared<const Dataset>(load_dataset("mnist", Split::train));
    const Probe probe = [train_set](Sequential<float>& model, const Batch&) -> std::vector<std::pair<std::string, double>> {
        return {{"train_eval_acc", evaluate(model, *train_set, true).accuracy}};
    };
    std::vector<RunSpec> specs;
    for (bool bn : {false, true}) {
        for (bool dropout : {false, true}) {
            TrainConfig c = paper_mlp_config("mnist", norm_from_bn(bn));
            c.model.dropout = dropout ? dropout_p : 0.0;
            c.steps = plan.steps;
            c.eval_every = plan.eval_every;
            for (auto& s : seeded_runs(arm_name(bn, dropout), c, plan.seeds, probe)) specs.push_back(std::move(s));
        }
    }
    const auto results = run_all(specs, dir, options, out);
    PlotSpec spec{"paper-mlp on MNIST (60,000 training images): train accuracy - test accuracy", "training step",
                  "train/test gap", false, {}};
    std::string table = "| BN | Dropout | train acc. (eval mode) | test acc. | gap |\n|---|---|---|---|---|\n";
    Spread gap[2][2], test[2][2];
    for (bool bn : {false, true}) {
        for (bool dropout : {false, true}) {
            const auto runs = runs_of(results, arm_name(bn, dropout));
            spec.curves.push_back(mean_curve(arm_name(bn, dropout), runs, [](const MetricsRow& r) {
                return r.at("train_eval_acc") - r.test_acc;
            }));
            gap[bn][dropout] = spread_of(each(runs, final_gap));
            test[bn][dropout] = spread_of(each(runs, final_test_acc));
            const Spread train = spread_of(each(runs, [](const RunResult& r) { return r.last_row().at("train_eval_acc"); }));
            table += std::string("| ") + (bn ? "on" : "off") + " | " + (dropout ? "0.2" : "-") + " | " +
                     format_spread(train) + " | " + format_spread(test[bn][dropout]) + " | " +
                     format_spread(gap[bn][dropout]) + diverged_note(runs) + " |\n";
        }
    }
    if (options.writes_report()) plot(spec, dir / "train_test_gap.png");
    const std::string rule = greater_rule("no BN's gap", "BN's");
    const std::vector<Claim> claims{
        {"BN regularizes: a smaller train/test gap than without BN (no Dropout)", "seed document §2, claim 3",
         "(no figure; the seed states it)",
         "final gap: no BN " + format_spread(gap[0][0]) + ", BN " + format_spread(gap[1][0]) + "; " +
             welch_note(gap[0][0], gap[1][0]),
         verdict_greater(gap[0][0], gap[1][0]), rule},
        {"With BN, Dropout can be removed: BN without Dropout tests at least as well as Dropout without BN",
         "Ioffe & Szegedy §4.2.1", "(Inception: removing Dropout from BN-Inception did not hurt)",
         "final test acc.: BN, no Dropout " + format_spread(test[1][0]) + "; no BN, Dropout " + format_spread(test[0][1]),
         test[1][0].mean >= test[0][1].mean ? "reproduced" : "not reproduced",
         "reproduced when BN without Dropout has the higher (or equal) mean"},
    };
    out << "final train/test gap: no BN " << format_spread(gap[0][0]) << ", BN " << format_spread(gap[1][0]) << "\n";
    char setup[300];
    std::snprintf(setup, sizeof setup,
                  "paper-mlp on mnist (60,000 train / 10,000 test), SGD lr 0.1, batch 60, %zu steps, seeds 0..%zu; "
                  "Dropout p = 0.2 after each hidden sigmoid; train accuracy over the whole training set in eval mode.",
                  plan.steps, plan.seeds - 1);
    if (options.writes_report()) {
        write_claims(dir, "regularization", "BN as a regularizer (seed claim 3, paper §4.2.1)", options, claims,
                     {table}, {"train_test_gap.png"}, setup);
    }
}

}  // namespace xgrad
