// regularization: paper-mlp on MNIST, BN on/off x Dropout 0 / 0.2 after each hidden sigmoid. Every
// evaluation also measures loss and accuracy on the whole training and test sets in eval mode, of
// the weights before the step's update; the train/test gap is their difference, averaged over the
// run's last evaluations rather than read at one.
#include <cstdio>
#include <functional>

#include "experiments/dataset.hpp"
#include "experiments/drivers.hpp"
#include "experiments/evaluation.hpp"

namespace xgrad {

namespace {

struct Plan {
    std::size_t steps, eval_every, seeds;
};

Plan plan_for(Profile p) { return p == Profile::paper ? Plan{20000, 500, 5} : Plan{40, 20, 2}; }

constexpr double dropout_p = 0.2;
// The gaps are averaged over the evaluations after this fraction of the run's last step.
constexpr double late_fraction = 0.9;

std::string arm_name(bool bn, bool dropout) {
    return std::string("bn-") + (bn ? "on" : "off") + (dropout ? "-dropout" : "");
}

// value(row) averaged over the evaluations after late_fraction of the last one's step (the last
// among them).
double late_mean(const RunResult& r, const std::function<double(const MetricsRow&)>& value) {
    const double from = late_fraction * static_cast<double>(r.last_row().step);
    double sum = 0;
    std::size_t count = 0;
    for (const auto& row : r.rows) {
        if (static_cast<double>(row.step) <= from) continue;
        sum += value(row);
        ++count;
    }
    return sum / static_cast<double>(count);
}

struct Figure {
    const char* column;
    std::function<double(const MetricsRow&)> value;
};

// The table's columns, in its order: eval-mode train and test figures and their gaps.
const Figure figures[] = {
    {"train loss", [](const MetricsRow& r) { return r.at("train_eval_loss"); }},
    {"test loss", [](const MetricsRow& r) { return r.at("test_eval_loss"); }},
    {"loss gap", [](const MetricsRow& r) { return r.at("test_eval_loss") - r.at("train_eval_loss"); }},
    {"train acc.", [](const MetricsRow& r) { return r.at("train_eval_acc"); }},
    {"test acc.", [](const MetricsRow& r) { return r.at("test_eval_acc"); }},
    {"acc. gap", [](const MetricsRow& r) { return r.at("train_eval_acc") - r.at("test_eval_acc"); }},
};
enum Column { train_loss, test_loss, loss_gap, train_acc, test_acc, acc_gap, columns };

}  // namespace

void run_regularization(const ExperimentOptions& options, std::ostream& out) {
    const Plan plan = plan_for(options.profile);
    const auto dir = options.results / "regularization";
    const auto train_set = std::make_shared<const Dataset>(load_dataset("mnist", Split::train));
    const auto test_set = std::make_shared<const Dataset>(load_dataset("mnist", Split::test));
    // Both sets measured here, of the same weights (the trainer's own evaluation follows the step).
    const Probe probe = [train_set, test_set](Sequential<float>& model, const Batch&) -> std::vector<std::pair<std::string, double>> {
        const Evaluation train = evaluate(model, *train_set, true), test = evaluate(model, *test_set, true);
        return {{"train_eval_acc", train.accuracy},
                {"train_eval_loss", train.loss},
                {"test_eval_acc", test.accuracy},
                {"test_eval_loss", test.loss}};
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
    PlotSpec gap_plots[2] = {{"paper-mlp on MNIST: test loss - train loss (eval mode)", "training step", "loss gap", false, {}},
                             {"paper-mlp on MNIST: train accuracy - test accuracy (eval mode)", "training step",
                              "accuracy gap", false, {}}};
    std::string table = "| BN | Dropout |";
    for (const Figure& f : figures) table += std::string(" ") + f.column + " |";
    table += "\n|---|---|---|---|---|---|---|---|\n";
    Spread late[2][2][columns];
    for (bool bn : {false, true}) {
        for (bool dropout : {false, true}) {
            const auto runs = runs_of(results, arm_name(bn, dropout));
            for (int k : {0, 1}) {
                gap_plots[k].curves.push_back(mean_curve(arm_name(bn, dropout), runs, figures[k ? acc_gap : loss_gap].value));
            }
            table += std::string("| ") + (bn ? "on" : "off") + " | " + (dropout ? "0.2" : "-") + " |";
            for (int c = 0; c < columns; ++c) {
                late[bn][dropout][c] = spread_of(each(runs, [c](const RunResult& r) { return late_mean(r, figures[c].value); }));
                table.append(" ").append(format_spread(late[bn][dropout][c])).append(" |");
            }
            table += diverged_note(runs) + "\n";
        }
    }
    for (PlotSpec& spec : gap_plots) spec.y_range = zoomed_y_range(spec.curves);
    const Spread& bn_alone = late[1][0][test_acc];
    const Spread& bn_dropout = late[1][1][test_acc];
    const double dropout_p_value = welch_greater(bn_dropout, bn_alone).p;
    char level[16];
    std::snprintf(level, sizeof level, "%g", significance_level);
    const std::vector<Claim> claims{
        {"BN regularizes: a smaller train/test gap than without BN (no Dropout)", "seed document §2, claim 3",
         "(no figure; the seed states it)",
         "loss gap (test - train): no BN " + format_spread(late[0][0][loss_gap]) + ", BN " +
             format_spread(late[1][0][loss_gap]) + "; " + welch_note(late[0][0][loss_gap], late[1][0][loss_gap]) +
             "; accuracy gap: no BN " + format_spread(late[0][0][acc_gap]) + ", BN " + format_spread(late[1][0][acc_gap]),
         verdict_greater(late[0][0][loss_gap], late[1][0][loss_gap]),
         greater_rule("no BN's loss gap", "BN's") +
             " (the loss gap, because train accuracy saturates at 1.000 and makes the accuracy gap the test error)"},
        {"With BN, Dropout can be removed: BN without Dropout tests at least as well as BN with Dropout",
         "Ioffe & Szegedy §4.2.1", "removing Dropout from BN-Inception did not hurt its validation accuracy",
         "test acc.: BN without Dropout " + format_spread(bn_alone) + ", BN with Dropout " + format_spread(bn_dropout) +
             "; Welch (with Dropout higher) " + format_p(dropout_p_value),
         bn_alone.mean >= bn_dropout.mean           ? "reproduced"
         : !(dropout_p_value < significance_level) ? "partly"
                                                    : "not reproduced",
         std::string("reproduced when BN without Dropout's mean test accuracy is at least BN with Dropout's; partly when ") +
             "lower but not significantly (Welch's one-sided t-test of \"with Dropout higher\" at p >= " + level +
             "); not reproduced when with Dropout is higher at p < " + level},
        {"BN without Dropout tests better than Dropout without BN", "Ioffe & Szegedy §4.2.1",
         "(not the paper's comparison: it changes BN and Dropout at once)",
         "test acc.: BN without Dropout " + format_spread(bn_alone) + ", no BN with Dropout " +
             format_spread(late[0][1][test_acc]) + "; " + welch_note(bn_alone, late[0][1][test_acc]),
         verdict_greater(bn_alone, late[0][1][test_acc]), greater_rule("BN without Dropout", "no BN with Dropout")},
    };
    out << "loss gap (test - train): no BN " << format_spread(late[0][0][loss_gap]) << ", BN "
        << format_spread(late[1][0][loss_gap]) << "\n";
    char setup[600];
    std::snprintf(setup, sizeof setup,
                  "paper-mlp on mnist (%s), SGD lr 0.1, batch 60, %zu steps, evaluations every %zu, seeds 0..%zu; "
                  "Dropout p = 0.2 after each hidden sigmoid. Loss and accuracy over the whole training and test sets "
                  "in eval mode, of the same weights; every figure is its mean over the evaluations of the last %g%% of the "
                  "steps (then over seeds).",
                  split_sizes("mnist").c_str(), plan.steps, plan.eval_every, plan.seeds - 1, 100 * (1 - late_fraction));
    if (options.writes_report()) {
        write_claims(dir, "regularization", "BN as a regularizer (seed claim 3, paper §4.2.1)", options, claims,
                     {table}, {{gap_plots[0], "train_test_loss_gap.png"}, {gap_plots[1], "train_test_gap.png"}}, setup);
    }
}

}  // namespace xgrad
