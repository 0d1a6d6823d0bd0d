// Sigmoid MLPs of any depth, as model specs (model_spec.hpp): flat images, then `depth` hidden
// layers of `width` units, each Linear, the run's --norm and a Sigmoid, then a Linear to the 10
// classes. The layers are named as paper-mlp's (fc1, bn1, sigmoid1, ..., fc<depth + 1>), so depth
// 3 at width 100 is paper-mlp without Dropout, drawing the same weights from the same seed, and
// depth 9 is specs/models/sigmoid-mlp-10.json.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "experiments/model_config.hpp"

namespace xgrad {

// The spec; std::invalid_argument unless depth and width are at least 1.
nlohmann::json sigmoid_mlp_spec(std::size_t depth, std::size_t width);

// A model of that spec with `norm`, named for errors "sigmoid-mlp(depth D, width W)".
ModelConfig sigmoid_mlp_model(std::size_t depth, std::size_t width, Norm norm);

// The dotted paths of its sigmoids, sigmoid1 .. sigmoid<depth>: what --record-activations takes.
std::vector<std::string> sigmoid_layer_names(std::size_t depth);

}  // namespace xgrad
