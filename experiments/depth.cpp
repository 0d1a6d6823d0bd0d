// depth: which sigmoid MLPs train at all, by depth, norm and learning rate (depth_runs.hpp). The
// paper's BN-x5-Sigmoid result (§4.2.2): with sigmoids, the network trains with BN and not
// without it. A run trains when it reaches the plan's target test accuracy without diverging.
#include <cmath>
#include <cstdio>
#include <limits>

#include "experiments/depth_runs.hpp"
#include "experiments/drivers.hpp"
#include "experiments/steps_to_target.hpp"

namespace xgrad {

namespace {

std::size_t trained_count(const std::vector<const RunResult*>& runs, double target) {
    std::size_t trained = 0;
    for (const RunResult* r : runs) trained += std::isfinite(steps_to_target(*r, target));
    return trained;
}

std::vector<const RunResult*> arm_runs(const std::vector<RunResult>& results, std::size_t depth, Norm norm,
                                       double multiplier) {
    return runs_of(results, DepthArm{depth, norm, multiplier}.name());
}

std::string depth_list(const std::vector<std::size_t>& depths) {
    if (depths.empty()) return "none";
    std::string out;
    for (std::size_t d : depths) out += (out.empty() ? "" : ", ") + std::to_string(d);
    return out;
}

}  // namespace

Claim depth_claim(const DepthPlan& plan, const std::vector<RunResult>& results, double multiplier) {
    std::vector<std::size_t> bn_trains, plain_trains;
    // The first of the depths from which on every depth separates; depths.size() for none (an
    // index rather than an optional, on which GCC 12 at -O1 warns of a maybe-uninitialized read).
    std::size_t onset_index = plan.depths.size();
    bool some_depth_favours_bn = false;
    for (std::size_t i = 0; i < plan.depths.size(); ++i) {
        const std::size_t depth = plan.depths[i];
        const auto bn = arm_runs(results, depth, Norm::batch, multiplier);
        const auto plain = arm_runs(results, depth, Norm::none, multiplier);
        const std::size_t bn_trained = trained_count(bn, plan.target), plain_trained = trained_count(plain, plan.target);
        if (bn_trained == bn.size()) bn_trains.push_back(depth);
        if (plain_trained == plain.size()) plain_trains.push_back(depth);
        some_depth_favours_bn |= bn_trained > plain_trained;
        const bool separates = bn_trained == bn.size() && plain_trained == 0;
        if (!separates) onset_index = plan.depths.size();
        else if (onset_index == plan.depths.size()) onset_index = i;
    }
    char target[16];
    std::snprintf(target, sizeof target, "%.2f", plan.target);
    std::string measured = "every seed reaches " + std::string(target) + " (n=" + std::to_string(plan.seeds) +
                           " per arm) without a norm at depths: " + depth_list(plain_trains) + "; with BN at: " +
                           depth_list(bn_trains);
    std::string verdict = some_depth_favours_bn ? "partly" : "not reproduced";
    if (onset_index < plan.depths.size()) {
        const std::size_t onset = plan.depths[onset_index];
        const auto bn = arm_runs(results, onset, Norm::batch, multiplier);
        const auto plain = arm_runs(results, onset, Norm::none, multiplier);
        const double p = mann_whitney_greater(steps_to_target(plain, plan.target), steps_to_target(bn, plan.target));
        measured += ". From depth " + std::to_string(onset) +
                    " on BN trains and no norm does not; there, best test acc. BN " +
                    format_spread(spread_of(each(bn, best_test_acc))) + ", no norm " +
                    format_spread(spread_of(each(plain, best_test_acc))) + "; steps to " + target +
                    ", Mann–Whitney " + format_p(p);
        if (p < significance_level) verdict = "reproduced";
    }
    char level[16];
    std::snprintf(level, sizeof level, "%g", significance_level);
    return {"Deep sigmoid MLPs train with BN and not without it (lr " + multiplier_label(multiplier) + ")",
            "Ioffe & Szegedy §4.2.2 (BN-x5-Sigmoid)",
            "Inception with sigmoids: BN-x5-Sigmoid reaches 69.8%; without BN it never exceeds 0.1% accuracy",
            measured,
            verdict,
            "reproduced when there is a depth d from which on, at every depth measured, every BN seed trains and no "
            "seed without a norm does, and at d the steps to the target (infinite when never reached) are more "
            "without a norm by the exact one-sided Mann–Whitney test at p < " + std::string(level) +
                "; partly when at some depth more BN seeds train than seeds without a norm"};
}

void run_depth(const ExperimentOptions& options, std::ostream& out) {
    const DepthPlan plan = depth_plan(options.profile);
    const auto results = train_depth_runs(plan, options, out);
    const auto dir = options.results / "depth";
    std::string table =
        "| depth | norm | lr | trained | best test acc. | final test acc. |\n|---|---|---|---|---|---|\n";
    std::vector<PlotFile> plots;
    std::vector<Claim> claims;
    for (double multiplier : plan.multipliers) {
        const std::string lr = multiplier_label(multiplier);
        PlotSpec spec{"sigmoid MLPs, lr " + lr + ": best test accuracy against depth (band = min..max over seeds)",
                      "hidden sigmoid layers", "best test accuracy", false, {}};
        for (Norm norm : plan.norms) {
            Curve curve{norm_label(norm), {}, {}, {}, {}};
            for (std::size_t depth : plan.depths) {
                const auto runs = arm_runs(results, depth, norm, multiplier);
                const Spread best = spread_of(each(runs, best_test_acc));
                append_point(curve, static_cast<double>(depth), best);
            }
            spec.curves.push_back(std::move(curve));
        }
        plots.push_back({spec, "best_accuracy_by_depth_" + lr + ".png"});
        claims.push_back(depth_claim(plan, results, multiplier));
        out << claims.back().claim << ": " << claims.back().verdict << "\n";
    }
    for (const DepthArm& arm : plan.arms()) {
        const auto runs = runs_of(results, arm.name());
        char row[400];
        std::snprintf(row, sizeof row, "| %zu | %s | %s | %zu of %zu | %s | %s%s |\n", arm.depth,
                      norm_label(arm.norm).c_str(), multiplier_label(arm.multiplier).c_str(),
                      trained_count(runs, plan.target), runs.size(),
                      format_spread(spread_of(each(runs, best_test_acc))).c_str(),
                      format_spread(spread_of(each(runs, final_test_acc))).c_str(), diverged_note(runs).c_str());
        table += row;
    }
    if (options.writes_report()) {
        write_claims(dir, "depth", "Deep sigmoid networks train with BN (paper §4.2.2)", options, claims, {table},
                     plots, depth_setup(plan));
    }
}

}  // namespace xgrad
