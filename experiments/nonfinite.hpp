// Where a model's numbers stopped being finite: the parameter or buffer holding a NaN or an
// infinity, or the first layer whose output is not finite. A diverged run and `xgrad eval` of a
// broken checkpoint name it rather than report a NaN loss as a result.
#pragma once

#include <optional>
#include <string>

#include <xtensor/xarray.hpp>

#include "layers/module.hpp"

namespace xgrad {

// The first parameter or buffer of `model` holding a non-finite value, named with its layer:
// "bn1 (BatchNorm1d(...)): buffer running_var holds nan at element 3 of 100"; nullopt when every
// value is finite.
std::optional<std::string> first_nonfinite_state(const Module<float>& model);

// Runs `images` through the model, in its current mode and without a graph, and names the first
// layer (at any depth, read by forward hooks) whose output is not finite ("fc2 (Linear(...))", or
// "the input" for non-finite images); nullopt when every output is finite. Layers that draw random numbers
// (Dropout) draw them, so a run must not continue afterwards.
std::optional<std::string> first_nonfinite_layer(Module<float>& model, const xt::xarray<float>& images);

}  // namespace xgrad
