// Measurements the experiment drivers take during training (trainer.hpp's Probe), each leaving
// the model exactly as it found it.
#pragma once

#include <cstddef>
#include <string>
#include <utility>
#include <vector>

#include <xtensor/xarray.hpp>

#include "experiments/batch_loader.hpp"
#include "layers/sequential.hpp"

namespace xgrad {

using ProbeValues = std::vector<std::pair<std::string, double>>;

// The distribution of one unit's input to the nonlinearity `layer` (a layer's dotted path, e.g.
// "sigmoid3") over `images`, in eval mode and without a graph, as Ioffe & Szegedy's Fig. 1(b, c),
// read by a forward hook on the layer: columns p15, p50, p85. std::invalid_argument if the model
// has no layer at `layer`.
ProbeValues unit_input_percentiles(Sequential<float>& model, const std::string& layer, std::size_t unit,
                                   const xt::xarray<float>& images);

// The loss landscape along the gradient, as Santurkar et al. 2018 (§3.1, Fig. 4) measure it: at
// the current weights w (the trainer calls it after a step's update) with loss L and gradient g
// on `batch`, the loss L_k and gradient g_k at w - eta_k g for eta_k = lr * multipliers[k], every
// forward in training mode with the same noise and masks (the generators are rewound each time).
// Columns: loss_range = max - min of {L, L_k}; grad_change = max_k ||g_k - g||;
// beta_smoothness = max_k ||g_k - g|| / ||eta_k g||. All three are infinite if a loss or
// gradient along the way is not finite.
ProbeValues landscape_along_gradient(Sequential<float>& model, const Batch& batch, double lr,
                                     const std::vector<double>& multipliers = {0.5, 1.0, 2.0, 3.0, 4.0});

}  // namespace xgrad
