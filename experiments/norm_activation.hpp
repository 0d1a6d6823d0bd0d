// The block that follows each hidden Linear or Conv2d of the experiments' models: the model's norm
// layer, the noise layer of noisy BN after it, and the nonlinearity. Where a Norm becomes a layer,
// and where BN and ReLU become one BatchNormReLU layer when nothing comes between them.
#pragma once

#include <cstddef>
#include <string>

#include "experiments/model_config.hpp"
#include "layers/sequential.hpp"

namespace xgrad {

// What the norm layer normalizes: d1 the (N, features) output of a Linear, d2 the
// (N, features, H, W) output of a Conv2d.
enum class Dims { d1, d2 };

enum class Activation { relu, sigmoid };

struct NormActivation {
    // The norm layer's name, "bn<suffix>"; the noise layer after it is "noise<suffix>".
    std::string norm_name;
    std::size_t features = 0;
    Dims dims = Dims::d1;
    Activation activation = Activation::relu;
    std::string activation_name;
};

// Appends to `model`, as `config` says: the norm layer (none for Norm::none), DistributionNoise
// after it when config.noisy_bn, then the activation. A norm with a fused ReLU form and a ReLU with
// nothing between them are that one layer, named as the norm layer: the same values, gradients
// and state_dict, one pass over the activations fewer each way.
void add_norm_activation(Sequential<float>& model, const ModelConfig& config, const NormActivation& block);

}  // namespace xgrad
