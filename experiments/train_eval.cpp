// train-eval (Wu & Johnson 2021, "Rethinking 'Batch' in BatchNorm", §3 and §4): seed-cnn with BN
// whose running statistics move by momentum 0.1 (torch's), by 0.01, or as a cumulative average,
// at several batches (the learning rate scaled with the batch). Every evaluation measures, of the
// weights before the step's update, the eval-mode test accuracy with the running statistics, the
// accuracy with PreciseBN's population statistics, the accuracy in training mode (each test batch
// normalized by its own statistics), and how far the running means are from the population's
// (experiments/bn_statistics_probe.hpp).
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "experiments/bn_statistics_probe.hpp"
#include "experiments/drivers.hpp"
#include "experiments/equivalence.hpp"
#include "experiments/run_data.hpp"

namespace xgrad {

namespace {

// The eval-mode accuracy with the running statistics counts as PreciseBN's when below it by less
// than this at the end of training.
constexpr double agreement_margin = 0.01;

struct Plan {
    std::string dataset;
    std::vector<std::size_t> batches;
    std::size_t images, epochs, evaluations, eval_samples, recalibration_images, seeds;
};

Plan plan_for(Profile p) {
    if (p == Profile::paper) return {"fashion-mnist", {4, 16, 64}, 10000, 1, 10, 2000, 2000, 5};
    return {"synthetic", {4, 16}, 64, 1, 2, 0, 32, 2};
}

struct Momentum {
    const char* name;
    std::optional<double> value;
};
const Momentum momenta[] = {{"ema0.1", 0.1}, {"ema0.01", 0.01}, {"cumulative", std::nullopt}};

std::string arm_name(const Momentum& m, std::size_t batch) { return std::string(m.name) + "-b" + std::to_string(batch); }

struct RunSets {
    Dataset train, test;
};

std::vector<RunSpec> train_eval_runs(const Plan& plan) {
    std::vector<RunSpec> specs;
    // The probe reads the images the run trains on; the synthetic ones depend on the seed.
    std::map<std::uint64_t, std::shared_ptr<const RunSets>> sets;
    for (const Momentum& m : momenta) {
        for (std::size_t b : plan.batches) {
            TrainConfig c = scaled_lr_cnn_config(plan.dataset, Norm::batch, b, plan.images, plan.epochs);
            c.model.bn_momentum = m.value;
            // Rounded up, so that the evaluations, the last step's included, are plan.evaluations.
            c.eval_every = std::max<std::size_t>((c.steps + plan.evaluations - 1) / plan.evaluations, 1);
            c.eval_samples = plan.eval_samples;
            for (std::uint64_t seed = 0; seed < plan.seeds; ++seed) {
                c.seed = seed;
                if (!sets.count(seed)) sets[seed] = std::make_shared<const RunSets>(RunSets{training_set_of(c), test_set_of(c)});
                const BnStatisticsProbeOptions probe_options{.batch = b,
                                                             .recalibration_batches = plan.recalibration_images / b,
                                                             .seed = seed,
                                                             .test_samples = plan.eval_samples};
                const Probe probe = [data = sets[seed], probe_options](Sequential<float>& model, const Batch&) {
                    return bn_statistics_gaps(model, data->train, data->test, probe_options);
                };
                for (auto& s : seeded_runs(arm_name(m, b), c, std::vector<std::uint64_t>{seed}, probe)) specs.push_back(std::move(s));
            }
        }
    }
    return specs;
}

// A figure of each run of an arm over seeds: the probe's `column` at its first or last evaluation.
Spread at_evaluation(const std::vector<RunResult>& results, const std::string& arm, const std::string& column, bool first) {
    return spread_of(each(runs_of(results, arm), [&](const RunResult& r) {
        const MetricsRow& row = first ? r.first_row() : r.last_row();
        return row.at(column);
    }));
}

}  // namespace

void run_train_eval(const ExperimentOptions& options, std::ostream& out) {
    const Plan plan = plan_for(options.profile);
    const auto dir = options.results / "train-eval";
    const auto results = run_all(train_eval_runs(plan), dir, options, out);

    std::string table =
        "| batch | running statistics | eval-mode acc., first eval. | PreciseBN acc., first | running-mean error, first | "
        "eval-mode acc., last | PreciseBN acc., last | train-mode acc., last | running-mean error, last |\n"
        "|---|---|---|---|---|---|---|---|---|\n";
    for (std::size_t b : plan.batches) {
        for (const Momentum& m : momenta) {
            const std::string arm = arm_name(m, b);
            table += "| " + std::to_string(b) + " | " + m.name + diverged_note(runs_of(results, arm));
            for (bool first : {true, false}) {
                table += " | " + format_spread(at_evaluation(results, arm, "running_acc", first)) + " | " +
                         format_spread(at_evaluation(results, arm, "precise_acc", first));
                if (!first) table += " | " + format_spread(at_evaluation(results, arm, "train_mode_acc", first));
                table += " | " + format_spread(at_evaluation(results, arm, "stats_lag", first), 3);
            }
            table += " |\n";
        }
    }

    // The claims at the largest batch (Wu & Johnson's setting: large batches, few steps, a large
    // learning rate) and, for the train-mode one, at the smallest.
    const std::size_t large = plan.batches.back(), small = plan.batches.front();
    const std::string ema = arm_name(momenta[0], large), slow = arm_name(momenta[1], large), cumulative = arm_name(momenta[2], large);
    const Spread ema_first = at_evaluation(results, ema, "running_acc", true);
    const Spread precise_first = at_evaluation(results, ema, "precise_acc", true);
    const Spread lag_ema_first = at_evaluation(results, ema, "stats_lag", true);
    const Spread lag_slow_first = at_evaluation(results, slow, "stats_lag", true);
    const Spread ema_last = at_evaluation(results, ema, "running_acc", false);
    const Spread precise_last = at_evaluation(results, ema, "precise_acc", false);
    const Spread cumulative_last = at_evaluation(results, cumulative, "running_acc", false);
    const Spread cumulative_precise_last = at_evaluation(results, cumulative, "precise_acc", false);
    const Spread small_train_mode = at_evaluation(results, arm_name(momenta[0], small), "train_mode_acc", false);
    const Spread small_precise = at_evaluation(results, arm_name(momenta[0], small), "precise_acc", false);
    const std::string at_large = " at batch " + std::to_string(large);
    char margin_words[32];
    std::snprintf(margin_words, sizeof margin_words, "%g point", 100 * agreement_margin);
    const std::vector<Claim> claims{
        {"Early in training the running statistics (EMA, momentum 0.1) lag the weights: eval-mode accuracy below "
         "PreciseBN's",
         "Wu & Johnson 2021, §3.1", "ResNet-50, ImageNet, batch 8192: EMA's validation accuracy lower and unstable in early epochs, PreciseBN's not",
         "test accuracy at the first evaluation" + at_large + ": EMA " + format_spread(ema_first) + ", PreciseBN " +
             format_spread(precise_first) + "; " + welch_note(precise_first, ema_first),
         verdict_greater(precise_first, ema_first), greater_rule("PreciseBN's accuracy", "EMA's")},
        {"A slower average lags more: running means further from the population's with momentum 0.01 than with 0.1",
         "Wu & Johnson 2021, §3.1", "a larger EMA decay (momentum 0.01 in torch's terms) makes the statistics more outdated",
         "mean |running mean - population mean| / population sd at the first evaluation" + at_large + ": momentum 0.01 " +
             format_spread(lag_slow_first, 3) + ", 0.1 " + format_spread(lag_ema_first, 3) + "; " + welch_note(lag_slow_first, lag_ema_first),
         verdict_greater(lag_slow_first, lag_ema_first), greater_rule("the running means' error with momentum 0.01", "with 0.1")},
        {"By the end of training EMA (momentum 0.1) and PreciseBN agree (within " + std::string(margin_words) + ")",
         "Wu & Johnson 2021, §3.1", "the two curves meet once the learning rate is small and the weights settle",
         "test accuracy at the last evaluation" + at_large + ": EMA " + format_spread(ema_last) + ", PreciseBN " +
             format_spread(precise_last) + "; " + within_note(precise_last, ema_last, agreement_margin, margin_words),
         verdict_within(precise_last, ema_last, agreement_margin),
         within_rule("PreciseBN's accuracy", "EMA's", margin_words)},
        {"A cumulative average keeps the statistics of early weights: at the end its eval-mode accuracy is below PreciseBN's",
         "Wu & Johnson 2021, §3", "population statistics must be those of the final weights, which PreciseBN computes",
         "test accuracy at the last evaluation" + at_large + ": cumulative average " + format_spread(cumulative_last) +
             ", PreciseBN " + format_spread(cumulative_precise_last) + "; " + welch_note(cumulative_precise_last, cumulative_last),
         verdict_greater(cumulative_precise_last, cumulative_last), greater_rule("PreciseBN's accuracy", "the cumulative average's")},
        {"At a small batch, training and inference are inconsistent: the test batches normalized by their own statistics "
         "(train mode) score above population statistics",
         "Wu & Johnson 2021, §4.1", "ResNet-50, ImageNet: at small normalization batches, validation error with mini-batch statistics below that with population statistics",
         "test accuracy at the last evaluation at batch " + std::to_string(small) + ": train mode " + format_spread(small_train_mode) +
             ", PreciseBN " + format_spread(small_precise) + "; " + welch_note(small_train_mode, small_precise),
         verdict_greater(small_train_mode, small_precise), greater_rule("train-mode accuracy", "PreciseBN's")},
    };

    PlotSpec accuracy{"seed-cnn with BN" + at_large + ": test accuracy by the statistics used", "training step", "test accuracy", false, {}};
    for (const Momentum& m : momenta) {
        accuracy.curves.push_back(mean_curve(m.name, runs_of(results, arm_name(m, large)), [](const MetricsRow& r) { return r.at("running_acc"); }));
    }
    accuracy.curves.push_back(
        mean_curve("PreciseBN (ema0.1 runs)", runs_of(results, ema), [](const MetricsRow& r) { return r.at("precise_acc"); }));
    PlotSpec lag{"seed-cnn with BN" + at_large + ": error of the running means", "training step",
                 "mean |running - population mean| / population sd", false, {}};
    for (const Momentum& m : momenta) {
        lag.curves.push_back(mean_curve(m.name, runs_of(results, arm_name(m, large)), [](const MetricsRow& r) { return r.at("stats_lag"); }));
    }
    out << "at the first evaluation" << at_large << ": EMA " << format_spread(ema_first) << ", PreciseBN " << format_spread(precise_first) << "\n";
    char setup[700];
    std::snprintf(setup, sizeof setup,
                  "seed-cnn with BN on the first %zu training images of %s, %zu epoch(s), SGD with momentum 0.9 and lr 0.1 * "
                  "batch / 256, seeds 0..%zu; %zu evaluations per run on the first %zu test images (0: all). PreciseBN "
                  "recalibrates over %zu training images in batches of the run's size; train mode normalizes each batch of "
                  "that size of the test images by its own statistics.",
                  plan.images, plan.dataset.c_str(), plan.epochs, plan.seeds - 1, plan.evaluations, plan.eval_samples,
                  plan.recalibration_images);
    if (options.writes_report()) {
        write_claims(dir, "train-eval", "Running statistics against PreciseBN (Wu & Johnson 2021)", options, claims,
                     {table}, {{accuracy, "test_accuracy.png"}, {lag, "running_mean_error.png"}}, setup);
    }
}

}  // namespace xgrad
