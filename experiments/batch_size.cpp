// batch-size (Wu & He 2018, "Group Normalization", §5.1, Table 3): seed-cnn with every norm at
// batches of 2 to 64, the learning rate scaled linearly with the batch and the same epochs of the
// same training images at every batch, so that only the batch differs: test error against batch
// size. Ghost BN normalizes virtual batches of 2 whatever the batch, which separates the batch its
// statistics come from (what Wu & He blame) from the batch SGD steps with. Under mpirun over 2
// ranks, data-parallel arms of a local batch b per rank (a global batch of 2b) set SyncBatchNorm,
// whose statistics span both ranks, against each rank's BN normalizing its own b.
#include <cstdint>
#include <cstdio>
#include <map>

#include "experiments/drivers.hpp"
#include "experiments/equivalence.hpp"

namespace xgrad {

namespace {

// Ghost BN's virtual batch: the smallest, so that Ghost BN at any batch normalizes as BN at 2.
constexpr std::size_t ghost_batch = 2;
// The batch Wu & He call typical (32 images per GPU) and the smallest they train with.
constexpr std::size_t typical_batch = 32, smallest_batch = 2;
// GN's error counts as independent of the batch when its rise from 32 to 2 is below this (points).
constexpr double flat_margin = 1.0;

// The ranks the data-parallel arms span; their global batch, ranks × the local one, is one of the
// plan's batches, so that SyncBN can be set beside one process's BN at that batch.
constexpr std::size_t data_parallel_ranks = 2;
// SyncBN counts as one process's BN at the global batch when their errors are within this (points).
constexpr double same_as_one_process_margin = 1.0;

struct Plan {
    std::string dataset;
    std::vector<std::size_t> batches;
    std::vector<Norm> norms;
    std::size_t images, epochs, eval_samples, seeds;
    std::vector<std::size_t> local_batches;  // of the data-parallel arms, smallest first
};

Plan plan_for(Profile p) {
    if (p == Profile::paper) {
        return {"fashion-mnist",
                {2, 4, 8, 16, 32, 64},
                {Norm::batch, Norm::ghost, Norm::batch_renorm, Norm::group, Norm::layer, Norm::instance, Norm::frn, Norm::none},
                10000, 2, 0, 5, {2, 8, 32}};
    }
    return {"synthetic", {smallest_batch, typical_batch}, {Norm::batch, Norm::ghost, Norm::group, Norm::none}, 64, 1, 0, 2, {16}};
}

// Whether this sweep trains the data-parallel arms: only over exactly their ranks.
bool trains_data_parallel(const ExperimentOptions& options) {
    return static_cast<std::size_t>(options.ranks->size()) == data_parallel_ranks;
}

// Ghost BN exists only where its virtual batch is below the batch.
bool trains_at(Norm norm, std::size_t batch) { return norm != Norm::ghost || batch > ghost_batch; }

// Batch Renorm's schedule (Ioffe 2017's: BN for 5k steps, then rmax to 3 by 40k and dmax to 5 by
// 25k) compressed so that rmax reaches 3 halfway through the run, whatever its steps.
void compress_renorm_schedule(TrainConfig& c) {
    const auto at = [&c](std::int64_t paper_step) { return static_cast<std::int64_t>(c.steps) * paper_step / 80'000; };
    c.model.renorm.warmup = at(5'000);
    c.model.renorm.dmax_at = at(25'000);
    c.model.renorm.rmax_at = at(40'000);
}

std::string arm_name(Norm norm, std::size_t batch) { return norm_name(norm) + "-b" + std::to_string(batch); }

// "sync-batch-w2-b8": over 2 ranks of 8 samples each; "local-batch-w2-b8" each rank's own BN.
std::string data_parallel_arm(bool sync, std::size_t local_batch) {
    return std::string(sync ? "sync-" : "local-") + norm_name(Norm::batch) + "-w" + std::to_string(data_parallel_ranks) + "-b" +
           std::to_string(local_batch);
}

std::vector<RunSpec> batch_size_runs(const Plan& plan, bool data_parallel) {
    std::vector<RunSpec> specs;
    for (Norm norm : plan.norms) {
        for (std::size_t b : plan.batches) {
            if (!trains_at(norm, b)) continue;
            TrainConfig c = scaled_lr_cnn_config(plan.dataset, norm, b, plan.images, plan.epochs);
            if (norm == Norm::ghost) c.model.ghost_batch = ghost_batch;
            if (norm == Norm::batch_renorm) compress_renorm_schedule(c);
            c.eval_every = steps_per_epoch(plan.images, b);
            c.eval_samples = plan.eval_samples;
            for (auto& s : seeded_runs(arm_name(norm, b), c, plan.seeds)) specs.push_back(std::move(s));
        }
    }
    if (!data_parallel) return specs;
    for (std::size_t b : plan.local_batches) {
        const std::size_t global = data_parallel_ranks * b;
        for (bool sync : {false, true}) {
            TrainConfig c = scaled_lr_cnn_config(plan.dataset, Norm::batch, global, plan.images, plan.epochs);
            c.model.sync_bn = sync;
            c.eval_every = steps_per_epoch(plan.images, global);
            c.eval_samples = plan.eval_samples;
            for (auto& s : seeded_runs(data_parallel_arm(sync, b), c, plan.seeds)) {
                s.over_every_rank = true;
                specs.push_back(std::move(s));
            }
        }
    }
    return specs;
}

// Test error in percent at the end of a run (a diverged run's last evaluation, 100 without one).
double final_error(const RunResult& r) { return 100.0 * (1.0 - final_test_acc(r)); }

// "BN: 34.7 ± 1.2 (n=3) at 2, 23.6 ± 0.4 (n=3) at 32".
std::string at_both(const std::string& norm, const Spread& small, const Spread& typical) {
    return norm + ": " + format_spread(small, 2) + " at " + std::to_string(smallest_batch) + ", " + format_spread(typical, 2) +
           " at " + std::to_string(typical_batch);
}

// The data-parallel arms beside one process's BN at their local and at their global batch: a table
// (appended to `tables`) and, at the smallest local batch, SyncBN against local BN and against one
// process's BN at the global batch (appended to `claims`).
void add_data_parallel_results(const Plan& plan, const std::vector<RunResult>& results,
                               const std::map<std::size_t, Spread>& bn_errors, std::vector<std::string>& tables,
                               std::vector<Claim>& claims) {
    const std::string w = std::to_string(data_parallel_ranks);
    const auto error_of = [](const std::vector<const RunResult*>& runs) { return spread_of(each(runs, final_error)); };
    std::string table = "| local batch per rank | BN at the local batch (one process) | BN over " + w +
                        " ranks, each its own statistics | SyncBN over " + w +
                        " ranks | BN at the global batch (one process) |\n|---|---|---|---|---|\n";
    const auto bn_at = [&bn_errors](std::size_t batch) {
        return bn_errors.contains(batch) ? format_spread(bn_errors.at(batch), 2) : std::string("-");
    };
    for (std::size_t b : plan.local_batches) {
        const auto local = runs_of(results, data_parallel_arm(false, b)), sync = runs_of(results, data_parallel_arm(true, b));
        table += "| " + std::to_string(b) + " | " + bn_at(b) + " | " + format_spread(error_of(local), 2) + diverged_note(local) +
                 " | " + format_spread(error_of(sync), 2) + diverged_note(sync) + " | " +
                 bn_at(data_parallel_ranks * b) + " |\n";
    }
    tables.push_back(table);

    const std::size_t b = plan.local_batches.front(), global = data_parallel_ranks * b;
    const Spread local = error_of(runs_of(results, data_parallel_arm(false, b)));
    const Spread sync = error_of(runs_of(results, data_parallel_arm(true, b)));
    const Spread& one_process = bn_errors.at(global);
    const std::string at = " over " + w + " ranks of " + std::to_string(b) + " images each";
    char margin_words[32];
    std::snprintf(margin_words, sizeof margin_words, "%g point", same_as_one_process_margin);
    claims.push_back({"SyncBN's statistics over every rank's images undo the small local batch: SyncBN" + at +
                          " errs less than BN normalizing each rank's own",
                      "Peng et al. 2018 (MegDet), cross-GPU BN; PyTorch's SyncBatchNorm",
                      "no figure for this setting: statistics over every GPU's images are BN's over the global batch",
                      "test error (%)" + at + ": each rank's own BN " + format_spread(local, 2) + ", SyncBN " +
                          format_spread(sync, 2) + "; " + welch_note(local, sync),
                      verdict_greater(local, sync), greater_rule("local BN's test error", "SyncBN's")});
    claims.push_back({"SyncBN" + at + " trains as one process's BN at their global batch of " + std::to_string(global) +
                          ": errors within " + margin_words,
                      "README, Distributed (the statistics, and so each step, are those of the global batch)",
                      "the same training but for the order of floating-point sums",
                      "test error (%): SyncBN" + at + " " + format_spread(sync, 2) + ", one process at batch " +
                          std::to_string(global) + " " + format_spread(one_process, 2) + "; " +
                          equivalence_note(sync, one_process, same_as_one_process_margin, margin_words),
                      verdict_equivalent(sync, one_process, same_as_one_process_margin),
                      equivalence_rule("SyncBN's error", "one process's at the global batch", margin_words)});
}

}  // namespace

void run_batch_size(const ExperimentOptions& options, std::ostream& out) {
    const Plan plan = plan_for(options.profile);
    const auto dir = options.results / "batch-size";
    const bool data_parallel = trains_data_parallel(options);
    const auto results = run_all(batch_size_runs(plan, data_parallel), dir, options, out);

    // errors[norm][batch], in percent over seeds.
    std::map<Norm, std::map<std::size_t, Spread>> errors;
    PlotSpec plot_spec{"seed-cnn on " + plan.dataset + ": test error against batch size (lr scaled with it)", "batch size",
                       "test error (%)", true, {}};
    std::string table = "| norm |";
    for (std::size_t b : plan.batches) table += " batch " + std::to_string(b) + " |";
    table += "\n|---|";
    for (std::size_t k = 0; k < plan.batches.size(); ++k) table += "---|";
    table += "\n";
    for (Norm norm : plan.norms) {
        Curve curve{norm_name(norm), {}, {}, {}, {}};
        // Appended piece by piece: GCC 12 misreports `"literal" + std::string` under -Wrestrict.
        table += "| ";
        table += norm_name(norm);
        if (norm == Norm::ghost) table += " (virtual batch " + std::to_string(ghost_batch) + ")";
        table += " |";
        for (std::size_t b : plan.batches) {
            if (!trains_at(norm, b)) {
                table += " - |";
                continue;
            }
            const auto runs = runs_of(results, arm_name(norm, b));
            const Spread s = spread_of(each(runs, final_error));
            errors[norm][b] = s;
            append_point(curve, static_cast<double>(b), s);
            table += " ";
            table += format_spread(s, 2) + diverged_note(runs) + " |";
        }
        table += "\n";
        plot_spec.curves.push_back(curve);
    }
    // Wu & He's Table 3 beside it, ResNet-50 on ImageNet, at the batches both have.
    const std::map<std::size_t, const char*> paper_bn{{2, "34.7"}, {32, "23.6"}}, paper_gn{{2, "24.1"}, {32, "24.1"}};
    for (const auto& [label, paper] : {std::pair{"Wu & He BN (ResNet-50, ImageNet)", &paper_bn}, std::pair{"Wu & He GN", &paper_gn}}) {
        table += std::string("| ") + label + " |";
        for (std::size_t b : plan.batches) table += std::string(" ") + (paper->count(b) ? paper->at(b) : "") + " |";
        table += "\n";
    }

    const Spread& bn_small = errors[Norm::batch][smallest_batch];
    const Spread& bn_typical = errors[Norm::batch][typical_batch];
    const Spread& gn_small = errors[Norm::group][smallest_batch];
    const Spread& gn_typical = errors[Norm::group][typical_batch];
    const Spread& ghost_typical = errors[Norm::ghost][typical_batch];
    char rise[64];
    std::snprintf(rise, sizeof rise, "rise %.2f points", gn_small.mean - gn_typical.mean);
    char margin_words[32];
    std::snprintf(margin_words, sizeof margin_words, "%g point", flat_margin);
    const std::string b2 = std::to_string(smallest_batch), b32 = std::to_string(typical_batch);
    std::vector<Claim> claims{
        {"BN's error rises as the batch shrinks: higher at batch " + b2 + " than at " + b32, "Wu & He 2018, §5.1, Table 3",
         "ResNet-50, ImageNet: 23.6% at 32 images per GPU, 34.7% at 2",
         "test error (%), " + at_both("BN", bn_small, bn_typical) + "; " + welch_note(bn_small, bn_typical),
         verdict_greater(bn_small, bn_typical), greater_rule("BN's test error at batch " + b2, "at batch " + b32)},
        {"GN's error does not depend on the batch: at batch " + b2 + " within " + margin_words + " of its error at " + b32,
         "Wu & He 2018, §5.1, Table 3", "24.1% at 32 and at 2",
         "test error (%), " + at_both("GN", gn_small, gn_typical) + ", " + rise + "; " +
             within_note(gn_small, gn_typical, flat_margin, margin_words),
         verdict_within(gn_small, gn_typical, flat_margin),
         within_rule("GN's error at batch " + b2, "its error at " + b32, margin_words)},
        {"GN beats BN at batch " + b2, "Wu & He 2018, §5.1, Table 3", "34.7% against 24.1%: 10.6 points lower with GN",
         "test error (%) at batch " + b2 + ": BN " + format_spread(bn_small, 2) + ", GN " + format_spread(gn_small, 2) + "; " +
             welch_note(bn_small, gn_small),
         verdict_greater(bn_small, gn_small), greater_rule("BN's test error at batch " + b2, "GN's")},
        {"At the typical batch (" + b32 + ") BN is slightly better than GN", "Wu & He 2018, §5.1, Table 3",
         "23.6% against 24.1% at 32 images per GPU",
         "test error (%) at batch " + b32 + ": BN " + format_spread(bn_typical, 2) + ", GN " + format_spread(gn_typical, 2) + "; " +
             welch_note(gn_typical, bn_typical),
         verdict_greater(gn_typical, bn_typical), greater_rule("GN's test error at batch " + b32, "BN's")},
        {"BN's small-batch error comes from the batch its statistics are taken over: Ghost BN normalizing virtual batches of " +
             std::to_string(ghost_batch) + " at batch " + b32 + " errs more than BN at " + b32,
         "Wu & He 2018, §1 and §3 (\"caused by inaccurate batch statistics estimation\")",
         "no figure: the paper varies the batch of SGD and of the statistics together",
         "test error (%) at batch " + b32 + ": Ghost BN " + format_spread(ghost_typical, 2) + ", BN " + format_spread(bn_typical, 2) +
             "; " + welch_note(ghost_typical, bn_typical),
         verdict_greater(ghost_typical, bn_typical), greater_rule("Ghost BN's test error at batch " + b32, "BN's")},
    };
    std::vector<std::string> tables{table};
    if (data_parallel) add_data_parallel_results(plan, results, errors[Norm::batch], tables, claims);
    out << "test error (%): " << at_both("BN", bn_small, bn_typical) << "; " << at_both("GN", gn_small, gn_typical) << "\n";
    char setup[800];
    std::snprintf(setup, sizeof setup,
                  "seed-cnn on the first %zu training images of %s (the whole test set), %zu epoch(s) at every batch, SGD "
                  "with momentum 0.9 and lr 0.1 * batch / 256, seeds 0..%zu; GroupNorm with Wu & He's 32 groups (one channel each on conv1's 32), Ghost BN with "
                  "virtual batches of %zu, Batch Renorm with its paper's schedule (BN for 5k steps, rmax 3 at 40k, dmax 5 at 25k) compressed so that rmax reaches 3 halfway through the run. Test error after the last epoch.",
                  plan.images, plan.dataset.c_str(), plan.epochs, plan.seeds - 1, ghost_batch);
    const std::string data_parallel_setup =
        data_parallel ? " The data-parallel arms train over " + std::to_string(data_parallel_ranks) +
                            " ranks of one thread each, each rank a share of every batch (torch's DistributedSampler), the "
                            "learning rate scaled with the global batch."
                      : " The data-parallel arms (SyncBN against each rank's own BN) train only over " +
                            std::to_string(data_parallel_ranks) + " ranks: `mpirun -np " + std::to_string(data_parallel_ranks) +
                            " xgrad experiment batch-size`; this sweep ran over " + std::to_string(options.ranks->size()) + ".";
    if (options.writes_report()) {
        write_claims(dir, "batch-size", "Test error against batch size (Wu & He 2018)", options, claims, tables,
                     {{plot_spec, "test_error.png"}}, setup + data_parallel_setup);
    }
}

}  // namespace xgrad
