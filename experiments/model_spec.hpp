// Models as spec files: `xgrad train --model-spec FILE.json` trains the model that FILE lists
// layer by layer, in place of a built-in one (models.hpp). The format:
//   {"input": [1, 28, 28],        one sample's shape: the images, or [784] for them flattened
//    "description": "...",        optional free text
//    "layers": [{"type": "conv", "name": "conv1", "out_channels": 32, "kernel": 3, "padding": 1}, ...]}
// Each layer has a "type" and may have a "name" (letters, digits, _ and -), the prefix of its
// state_dict entries (default: its index in its list, "0", "1", ..., as torch's Sequential names
// them). In-channels and in-features come from the shape before the layer. The types and their keys (defaults in brackets):
//   conv      out_channels, kernel, stride [1], padding [0], bias [true], weight_standardization [false]
//   linear    out_features, bias [true]
//   norm      kind [the run's --norm], groups [--norm-groups, which only --norm group sets: 32
//             otherwise] for kind group, ghost_batch for kind ghost, optional [false]; a
//             batch-renorm layer takes the --renorm-* settings (their defaults unless --norm
//             batch-renorm)
//   relu, sigmoid, tanh, flatten
//   maxpool   kernel, stride [kernel]
//   dropout   p [the run's --dropout]; p = 0 adds no layer
//   residual  layers: the body, whose output has its input's shape; output = x + body(x), with
//             state_dict names "<name>.body.<layer name>.<parameter>" (layers/residual.hpp)
// The rules the built-in models follow are the same functions here (norm_activation.hpp):
// - "bias": "auto" is no bias when the next layer is a norm that removes a per-channel constant
//   (removes_channel_constant: batch, batch-renorm, ghost), whose beta takes the bias's place.
// - A norm whose kind has no layer at its position (instance and frn after a linear:
//   why_no_norm_after_linear) is an error, or left out when "optional": true.
// - A norm followed by relu, sigmoid or tanh is add_norm_activation's block: BN and ReLU one fused
//   layer named as the norm, --noisy-bn's noise layer after the norm (noise_layer_name), FRN's TLU
//   in place of the ReLU that must follow it.
// A norm without "kind" makes one spec sweep over every --norm; with --sync-bn, its batch layers
// are SyncBatchNorm. Everything is checked when the spec is loaded: an unknown type or key, a value
// of the wrong JSON type or out of its range, a layer given a shape it cannot take, a residual body
// changing the shape, an output other than (N, 10). Each error names the spec, the layer
// ("layers[6].layers[2]") and the shapes, with N for the batch: "(N, 64, 7, 7)".
#pragma once

#include <filesystem>
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "experiments/model_config.hpp"
#include "layers/init.hpp"
#include "layers/sequential.hpp"

namespace xgrad {

// The spec in `file`, checked (check_model_spec): an UnreadableFile or a std::runtime_error when
// it is not a readable file holding a JSON object, a std::invalid_argument when a check fails.
nlohmann::json load_model_spec(const std::filesystem::path& file);

// `model` set to train the spec in `file` (load_model_spec).
void use_model_spec(ModelConfig& model, const std::filesystem::path& file);

// A std::invalid_argument naming `source`, the layer and the shapes for the first thing wrong
// in `spec` (see above); the checks that depend on the run's norm settings (--norm-groups
// dividing a layer's channels, a kind-less norm after a linear) are build_spec_model's.
void check_model_spec(const nlohmann::json& spec, const std::string& source);

// Whether the spec takes images flattened to (N, 784): its input is [784].
bool spec_takes_flat_input(const nlohmann::json& spec);

// The model of config.spec, checked first, with its norm layers as `config` says; every layer
// draws its initialization from `rng` in the order of the list (make_model re-initializes and
// seeds the random layers after).
std::shared_ptr<Sequential<float>> build_spec_model(const ModelConfig& config, Rng& rng);

}  // namespace xgrad
