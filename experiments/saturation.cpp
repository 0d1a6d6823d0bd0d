// saturation: the fraction of each sigmoid's inputs with |x| > saturation_threshold over training,
// by depth, norm and learning rate, on the depth driver's runs (depth_runs.hpp), which record it
// at every evaluation over the first test images in eval mode (activations.csv). The paper's
// argument for BN (§1): without it, training moves the inputs of a sigmoid into its saturated
// regime, where its gradient vanishes, and more so the deeper the network.
#include <algorithm>
#include <cstdio>

#include "experiments/activations_log.hpp"
#include "experiments/depth_runs.hpp"
#include "experiments/drivers.hpp"
#include "experiments/sigmoid_mlp.hpp"

namespace xgrad {

namespace {

// One run's saturated fraction per sigmoid layer and evaluation: by_layer[layer][evaluation].
struct Saturation {
    std::vector<std::size_t> steps;
    std::vector<std::vector<double>> by_layer;

    // The mean over layers at an evaluation.
    double mean_at(std::size_t evaluation) const {
        double sum = 0;
        for (const auto& layer : by_layer) sum += layer.at(evaluation);
        return sum / static_cast<double>(by_layer.size());
    }
    double first() const { return mean_at(0); }
    double last() const { return mean_at(steps.size() - 1); }
    // The most saturated layer's fraction at the last evaluation.
    double last_worst() const {
        double worst = 0;
        for (const auto& layer : by_layer) worst = std::max(worst, layer.back());
        return worst;
    }
};

// The run's activations.csv read as sigmoid1 .. sigmoid<depth>; a std::runtime_error naming the
// file when it holds another layer, a row without a saturated fraction, or no evaluation.
Saturation saturation_of(const RunResult& run, std::size_t depth) {
    const auto file = run.dir / "activations.csv";
    const std::vector<std::string> layers = sigmoid_layer_names(depth);
    Saturation s{{}, std::vector<std::vector<double>>(depth)};
    for (const ActivationStatistics& row : read_activations_csv(file)) {
        const auto layer = std::find(layers.begin(), layers.end(), row.layer);
        if (layer == layers.end() || !row.saturated) {
            throw std::runtime_error(file.string() + ": step " + std::to_string(row.step) + ", layer '" + row.layer +
                                     "' is not one of the sigmoids of a depth-" + std::to_string(depth) + " MLP");
        }
        if (s.steps.empty() || s.steps.back() != row.step) s.steps.push_back(row.step);
        s.by_layer[static_cast<std::size_t>(layer - layers.begin())].push_back(*row.saturated);
    }
    for (const auto& values : s.by_layer) {
        if (values.empty() || values.size() != s.steps.size()) {
            throw std::runtime_error(file.string() + ": expected a row per sigmoid layer (" + std::to_string(depth) +
                                     ") at each of its evaluations");
        }
    }
    return s;
}

// The runs' saturations, but for a run that diverged before its first evaluation (it has none).
std::vector<Saturation> saturations_of(const std::vector<const RunResult*>& runs, std::size_t depth) {
    std::vector<Saturation> out;
    for (const RunResult* r : runs) {
        if (!r->rows.empty()) out.push_back(saturation_of(*r, depth));
    }
    return out;
}

Spread spread_over(const std::vector<Saturation>& runs, double (Saturation::*figure)() const) {
    std::vector<double> values;
    for (const auto& s : runs) values.push_back((s.*figure)());
    return spread_of(values);
}

std::string threshold_text() {
    char text[16];
    std::snprintf(text, sizeof text, "|x| > %g", saturation_threshold);
    return text;
}

// Without a norm, the last evaluation's saturated fraction (mean over layers) above BN's.
Claim drift_claim(const std::vector<Saturation>& plain, const std::vector<Saturation>& bn, std::size_t depth,
                  double multiplier) {
    const Spread plain_last = spread_over(plain, &Saturation::last), bn_last = spread_over(bn, &Saturation::last);
    return {"Without BN, training moves sigmoid inputs into saturation; BN keeps them out (depth " +
                std::to_string(depth) + ", lr " + multiplier_label(multiplier) + ")",
            "Ioffe & Szegedy §1",
            "(no figure) changes to the earlier layers \"will likely move many dimensions of x into the saturated "
            "regime of the nonlinearity\"; BN makes the inputs' distribution stable",
            "fraction with " + threshold_text() + ", mean over the " + std::to_string(depth) +
                " sigmoids, first evaluation: no norm " + format_spread(spread_over(plain, &Saturation::first)) +
                ", BN " + format_spread(spread_over(bn, &Saturation::first)) + "; last: no norm " +
                format_spread(plain_last) + ", BN " + format_spread(bn_last) + "; " + welch_note(plain_last, bn_last),
            verdict_greater(plain_last, bn_last),
            "per seed, the saturated fraction at the last evaluation, mean over the sigmoids; " +
                greater_rule("no norm", "BN")};
}

// Without a norm, the deepest network's inputs more saturated than the shallowest's.
Claim depth_growth_claim(const std::vector<Saturation>& shallow, const std::vector<Saturation>& deep,
                         std::size_t shallow_depth, std::size_t deep_depth, double multiplier) {
    const Spread shallow_last = spread_over(shallow, &Saturation::last), deep_last = spread_over(deep, &Saturation::last);
    return {"Without BN, saturation grows with depth (lr " + multiplier_label(multiplier) + ")", "Ioffe & Szegedy §1",
            "(no figure) \"This effect is amplified as the network depth increases.\"",
            "no norm, fraction with " + threshold_text() + " at the last evaluation, mean over the sigmoids: depth " +
                std::to_string(deep_depth) + " " + format_spread(deep_last) + ", depth " + std::to_string(shallow_depth) +
                " " + format_spread(shallow_last) + "; " + welch_note(deep_last, shallow_last),
            verdict_greater(deep_last, shallow_last),
            "per seed without a norm, the saturated fraction at the last evaluation, mean over the sigmoids; " +
                greater_rule("depth " + std::to_string(deep_depth), "depth " + std::to_string(shallow_depth))};
}

// One curve per layer: its saturated fraction averaged over the runs at each evaluation all of
// them reached, with a band from the lowest run to the highest.
PlotSpec saturation_plot(const std::string& title, const std::vector<Saturation>& runs) {
    PlotSpec spec{title, "training step", "fraction of sigmoid inputs with " + threshold_text(), false, {}};
    std::size_t evaluations = runs.front().steps.size();
    for (const auto& s : runs) evaluations = std::min(evaluations, s.steps.size());
    for (std::size_t layer = 0; layer < runs.front().by_layer.size(); ++layer) {
        Curve curve{"sigmoid" + std::to_string(layer + 1), {}, {}, {}, {}};
        for (std::size_t k = 0; k < evaluations; ++k) {
            std::vector<double> values;
            for (const auto& s : runs) values.push_back(s.by_layer[layer][k]);
            append_point(curve, static_cast<double>(runs.front().steps[k]), spread_of(values));
        }
        spec.curves.push_back(std::move(curve));
    }
    return spec;
}

}  // namespace

void run_saturation(const ExperimentOptions& options, std::ostream& out) {
    const DepthPlan plan = depth_plan(options.profile);
    const auto results = train_depth_runs(plan, options, out);
    const auto dir = options.results / "saturation";
    std::filesystem::create_directories(dir);
    const auto saturations = [&](std::size_t depth, Norm norm, double multiplier) {
        return saturations_of(runs_of(results, DepthArm{depth, norm, multiplier}.name()), depth);
    };
    // The claims and plots at the shallowest depth (the paper's MLP in the paper profile) and the deepest.
    const std::size_t shallow = plan.depths.front(), deep = plan.depths.back();
    std::string table = "| depth | norm | lr | first evaluation | last evaluation | most saturated layer, last |\n"
                        "|---|---|---|---|---|---|\n";
    std::vector<PlotFile> plots;
    for (const DepthArm& arm : plan.arms()) {
        const auto runs = runs_of(results, arm.name());
        const auto arm_saturations = saturations_of(runs, arm.depth);
        char row[400];
        std::snprintf(row, sizeof row, "| %zu | %s | %s | %s | %s | %s%s |\n", arm.depth, norm_label(arm.norm).c_str(),
                      multiplier_label(arm.multiplier).c_str(),
                      format_spread(spread_over(arm_saturations, &Saturation::first)).c_str(),
                      format_spread(spread_over(arm_saturations, &Saturation::last)).c_str(),
                      format_spread(spread_over(arm_saturations, &Saturation::last_worst)).c_str(),
                      diverged_note(runs).c_str());
        table += row;
        const bool plotted =
            (arm.depth == shallow || arm.depth == deep) && (arm.norm == Norm::none || arm.norm == Norm::batch);
        if (!plotted || arm_saturations.empty()) continue;
        plots.push_back({saturation_plot("depth " + std::to_string(arm.depth) + ", " + norm_label(arm.norm) + ", lr " +
                                             multiplier_label(arm.multiplier) + ": saturated inputs per sigmoid (band = min..max)",
                                         arm_saturations),
                         "saturation_" + arm.name() + ".png"});
    }
    std::vector<Claim> claims;
    for (double m : plan.multipliers) {
        claims.push_back(drift_claim(saturations(shallow, Norm::none, m), saturations(shallow, Norm::batch, m), shallow, m));
    }
    for (double m : plan.multipliers) {
        claims.push_back(
            depth_growth_claim(saturations(shallow, Norm::none, m), saturations(deep, Norm::none, m), shallow, deep, m));
    }
    for (const Claim& c : claims) out << c.claim << ": " << c.verdict << "\n";
    if (options.writes_report()) {
        write_claims(dir, "saturation", "Saturated sigmoids without BN (paper §1)", options, claims, {table}, plots,
                     depth_setup(plan) + " The runs of `depth` (results/depth). Saturated: a sigmoid input with " +
                         threshold_text() + ", counted over the first " + std::to_string(activation_sample_images) +
                         " test images in eval mode at every evaluation; the table's figures are the mean over an MLP's "
                         "sigmoid layers, and the most saturated layer's.");
    }
}

}  // namespace xgrad
