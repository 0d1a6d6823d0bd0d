// What `xgrad train --record-activations LAYER,...` measures at each evaluation: the distribution
// of one tensor of each named layer over a fixed sample of images, read by forward hooks. For a
// nonlinearity (ReLU, Sigmoid, Tanh) the tensor is its input, the pre-activation that Ioffe &
// Szegedy's Fig. 1 plots; for any other layer, its output. The statistics are over every element
// of the tensor (samples, units and positions together), in eval mode and without a graph, so the
// model is left as it was and the run's weights and metrics are the same bits as without them.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <vector>

#include <xtensor/xarray.hpp>

#include "layers/module.hpp"

namespace xgrad {

// The first images of the test set that each evaluation measures on (all, if it has fewer).
inline constexpr std::size_t activation_sample_images = 1000;
// A sigmoid or tanh input beyond this magnitude is saturated: sigmoid'(3) = 0.045, tanh'(3) = 0.0099.
inline constexpr double saturation_threshold = 3.0;

struct ActivationStatistics {
    std::size_t step = 0;  // the model's step (Module::set_step) when measured
    std::string layer;
    double mean = 0, std = 0;  // std: the population's (numpy's default, ddof = 0)
    double p15 = 0, p50 = 0, p85 = 0;
    // The fraction of |input| > saturation_threshold, for a Sigmoid or Tanh layer only.
    std::optional<double> saturated;
};

// std::invalid_argument naming --record-activations, the name and the model's layer paths unless
// every one of `layers` is a layer of `model` (a dotted path, as in the state_dict).
void check_recorded_layers(const Module<float>& model, const std::vector<std::string>& layers);

// The statistics of each of `layers` over `images` (run in batches of 500), in their order. A
// tensor holding a NaN has NaN statistics.
std::vector<ActivationStatistics> activation_statistics(Module<float>& model, const std::vector<std::string>& layers,
                                                        const xt::xarray<float>& images);

}  // namespace xgrad
