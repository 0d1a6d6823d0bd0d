#include "experiments/norm_activation.hpp"

#include <memory>
#include <stdexcept>

#include "layers/activations.hpp"
#include "layers/distribution_noise.hpp"
#include "layers/normalization/batch_norm.hpp"

namespace xgrad {

namespace {

template <class Layer1d, class Layer2d>
std::shared_ptr<Module<float>> for_dims(Dims dims, std::size_t features) {
    if (dims == Dims::d1) return std::make_shared<Layer1d>(features);
    return std::make_shared<Layer2d>(features);
}

// The layer of `norm`, or null for Norm::none.
std::shared_ptr<Module<float>> make_norm_layer(Norm norm, std::size_t features, Dims dims) {
    switch (norm) {
        case Norm::batch: return for_dims<BatchNorm1d<float>, BatchNorm2d<float>>(dims, features);
        case Norm::none: return nullptr;
    }
    throw std::invalid_argument("make_norm_layer: no Norm has the value " + std::to_string(static_cast<int>(norm)));
}

// The layer of `norm` followed by a ReLU in one node, or null when `norm` has no such form.
std::shared_ptr<Module<float>> make_norm_relu_layer(Norm norm, std::size_t features, Dims dims) {
    if (norm == Norm::batch) return for_dims<BatchNormReLU1d<float>, BatchNormReLU2d<float>>(dims, features);
    return nullptr;
}

std::shared_ptr<Module<float>> make_activation(Activation activation) {
    switch (activation) {
        case Activation::relu: return std::make_shared<ReLU<float>>();
        case Activation::sigmoid: return std::make_shared<Sigmoid<float>>();
    }
    throw std::invalid_argument("make_activation: no Activation has the value " + std::to_string(static_cast<int>(activation)));
}

}  // namespace

void add_norm_activation(Sequential<float>& model, const ModelConfig& config, const NormActivation& block) {
    if (block.activation == Activation::relu && !config.noisy_bn) {
        if (auto fused = make_norm_relu_layer(config.norm, block.features, block.dims)) {
            model.add(block.norm_name, fused);
            return;
        }
    }
    if (auto norm = make_norm_layer(config.norm, block.features, block.dims)) {
        model.add(block.norm_name, norm);
        // The generator is seeded by make_model once every initialization draw is done.
        if (config.noisy_bn) model.add("noise" + block.norm_name.substr(2), std::make_shared<DistributionNoise<float>>(0));
    }
    model.add(block.activation_name, make_activation(block.activation));
}

}  // namespace xgrad
