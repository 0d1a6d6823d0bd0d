#include "experiments/depth_runs.hpp"

#include <cstdio>

#include "experiments/drivers.hpp"
#include "experiments/sigmoid_mlp.hpp"

namespace xgrad {

namespace {

// paper-mlp's training (SGD, its learning rate and batch), on Fashion-MNIST.
TrainConfig depth_base_config(Norm norm) { return paper_mlp_config("fashion-mnist", norm); }

}  // namespace

std::string DepthArm::name() const {
    char text[64];
    std::snprintf(text, sizeof text, "d%zu-%s-%s", depth, norm_name(norm).c_str(), multiplier_label(multiplier).c_str());
    return text;
}

std::vector<DepthArm> DepthPlan::arms() const {
    std::vector<DepthArm> out;
    for (std::size_t depth : depths) {
        for (Norm norm : norms) {
            for (double multiplier : multipliers) out.push_back({depth, norm, multiplier});
        }
    }
    return out;
}

DepthPlan depth_plan(Profile profile) {
    const std::vector<Norm> norms{Norm::none, Norm::batch, Norm::group, Norm::layer};
    if (profile == Profile::paper) return {{3, 6, 10, 20}, norms, {1, 5}, 100, 10000, 500, 0, 5, 0.5};
    // Shallow, narrow (a multiple of the groups) and short, on part of the test set: seconds.
    return {{2, 4}, norms, {1, 5}, 50, 40, 20, 500, 2, 0.3};
}

std::string norm_label(Norm norm) {
    switch (norm) {
        case Norm::none: return "no norm";
        case Norm::batch: return "BN";
        case Norm::group: return "GroupNorm";
        case Norm::layer: return "LayerNorm";
        default: return norm_name(norm);
    }
}

std::string multiplier_label(double multiplier) {
    char text[32];
    std::snprintf(text, sizeof text, "x%g", multiplier);
    return text;
}

std::vector<RunSpec> depth_runs(const DepthPlan& plan) {
    std::vector<RunSpec> specs;
    for (const DepthArm& arm : plan.arms()) {
        TrainConfig c = depth_base_config(arm.norm);
        c.model = sigmoid_mlp_model(arm.depth, plan.width, arm.norm);
        if (arm.norm == Norm::group) c.model.norm_groups = depth_group_norm_groups;
        c.lr *= arm.multiplier;
        c.steps = plan.steps;
        c.eval_every = plan.eval_every;
        c.eval_samples = plan.eval_samples;
        c.record_activations = sigmoid_layer_names(arm.depth);
        for (auto& s : seeded_runs(arm.name(), c, plan.seeds)) specs.push_back(std::move(s));
    }
    return specs;
}

std::vector<RunResult> train_depth_runs(const DepthPlan& plan, const ExperimentOptions& options, std::ostream& log) {
    return run_all(depth_runs(plan), options.results / "depth", options, log);
}

std::string depth_setup(const DepthPlan& plan) {
    std::string depths, rates;
    for (std::size_t d : plan.depths) depths += (depths.empty() ? "" : ", ") + std::to_string(d);
    const TrainConfig base = depth_base_config(Norm::none);
    for (double m : plan.multipliers) {
        char lr[32];
        std::snprintf(lr, sizeof lr, "%g", base.lr * m);
        rates += (rates.empty() ? "" : ", ") + std::string(lr) + " (" + multiplier_label(m) + ")";
    }
    const std::string evaluated = plan.eval_samples ? std::to_string(plan.eval_samples) + " test images" : "the test set";
    char text[700];
    std::snprintf(text, sizeof text,
                  "Sigmoid MLPs on Fashion-MNIST, 784-%zux(depth)-10 for depths %s, each hidden Linear followed by no "
                  "norm, BN, GroupNorm (%zu groups) or LayerNorm, then a sigmoid; SGD at lr %s, batch %zu, "
                  "torch's default init, %zu steps, test accuracy every %zu steps on %s, seeds 0..%zu. A run trains "
                  "when it reaches test accuracy %.2f without diverging.",
                  plan.width, depths.c_str(), depth_group_norm_groups, rates.c_str(), base.batch, plan.steps,
                  plan.eval_every, evaluated.c_str(), plan.seeds - 1, plan.target);
    return text;
}

}  // namespace xgrad
