// The runs the depth and saturation drivers share, and depth's claim over them: sigmoid MLPs (sigmoid_mlp.hpp) of several
// depths, each without normalization, with BN, GroupNorm and LayerNorm, at multiples of paper-mlp's
// learning rate (SGD 0.1, batch 60, torch's default init), on Fashion-MNIST. Every evaluation also
// records each sigmoid's input over the first test images (activations.csv), whose saturated
// fraction the saturation driver reads; depth reads the accuracies.
#pragma once

#include <cstddef>
#include <ostream>
#include <string>
#include <vector>

#include "experiments/experiment.hpp"

namespace xgrad {

struct DepthArm {
    std::size_t depth;
    Norm norm;
    double multiplier;
    // "d<depth>-<norm>-x<multiplier>", its runs' directory under the experiment's.
    std::string name() const;
};

struct DepthPlan {
    std::vector<std::size_t> depths;
    std::vector<Norm> norms;
    std::vector<double> multipliers;
    std::size_t width, steps, eval_every, eval_samples, seeds;
    // A run trains when it reaches this test accuracy (chance is 0.1) without diverging.
    double target;
    // Every depth, norm and multiplier, in that order of nesting.
    std::vector<DepthArm> arms() const;
};

// Wu & He's 32 groups do not divide the MLPs' 100 units; 25 groups of 4 is the nearest that does.
inline constexpr std::size_t depth_group_norm_groups = 25;

DepthPlan depth_plan(Profile profile);

// How tables and plots name a norm: "no norm", "BN", "GroupNorm", "LayerNorm".
std::string norm_label(Norm norm);
// How they name a learning-rate multiplier: "x5".
std::string multiplier_label(double multiplier);

// Every run of the plan, each arm's seeds 0 .. seeds - 1 together.
std::vector<RunSpec> depth_runs(const DepthPlan& plan);

// Trains (or reuses) depth_runs under <results>/depth.
std::vector<RunResult> train_depth_runs(const DepthPlan& plan, const ExperimentOptions& options, std::ostream& log);

// depth's claim at one multiplier, from the plan's runs in `results` (named as depth_runs names
// them): reproduced when from some depth d on, at every depth of the plan, every BN seed trains and
// no seed without a norm does, and at d the steps to the target (infinite when never reached) are
// more without a norm by the exact one-sided Mann–Whitney test; partly when at some depth more
// BN seeds train than seeds without a norm.
Claim depth_claim(const DepthPlan& plan, const std::vector<RunResult>& results, double multiplier);

// The plan's setup in words, for claims.json.
std::string depth_setup(const DepthPlan& plan);

}  // namespace xgrad
