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
// the weights w the trainer is about to update (it calls probes before the step's update), with
// loss L and gradient g on the batch of that update, the loss L_k and gradient g_k at w - eta_k g
// for eta_k = lr * multipliers[k], every forward in training mode with the same noise and masks
// (the generators are rewound each time). Columns:
//   loss = L; loss_min, loss_max = the lowest and highest of {L, L_k} (Fig. 4(a)'s shaded band);
//   loss_range = loss_max - loss_min;
//   grad_change = max_k ||g_k - g|| (Fig. 4(b), "gradient predictiveness");
//   beta_smoothness = max_k ||g_k - g|| / ||eta_k g|| (Fig. 4(c));
//   first_order_error = max_k |L_k - (L - eta_k ||g||^2)| / (eta_k ||g||^2): how far the loss
//     strays from its first-order prediction, relative to the decrease that prediction promises,
//     so free of the loss's and the step's scale (0 where the loss is linear along g; on a quadratic
//     it is eta_k times the curvature along g over 2);
//   gradient_cosine = min_k cos(g, g_k): 1 where the gradient keeps its direction along the step.
// When g = 0 the ratios are 0 and the cosine 1. When a loss or gradient along the way is not
// finite, every column but loss and loss_min is infinite and the cosine is -1 (the worst).
ProbeValues landscape_along_gradient(Sequential<float>& model, const Batch& batch, double lr,
                                     const std::vector<double>& multipliers = {0.5, 1.0, 2.0, 3.0, 4.0});

// Santurkar et al.'s internal covariate shift in the gradient sense (§2.2, Definition 2.1, Fig. 5)
// of each layer in `layers` (dotted paths of layers with parameters, e.g. "fc2"): G, the gradient
// of the layer's parameters at the weights the trainer is about to update, and G', that gradient
// once every parameter before the layer's (in the model's parameter order: the earlier layers')
// has taken the gradient step w - lr g, the layer's own and later ones unchanged. Both on `batch`
// in training mode with the same noise and masks: only the earlier layers' update differs.
// Columns per layer P: ics_P = ||G - G'|| and ics_cos_P = cos(G, G') (1 when G = G', 0 when one
// of them is 0 and the other not). A layer with no parameter before it gets 0 and 1. Non-finite
// gradients give an infinite ics_P and a cosine of -1. std::invalid_argument if a path names no
// layer with parameters.
ProbeValues internal_covariate_shift(Sequential<float>& model, const Batch& batch, double lr,
                                     const std::vector<std::string>& layers);

}  // namespace xgrad
