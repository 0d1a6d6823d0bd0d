#include "experiments/norm_activation.hpp"

#include <memory>
#include <stdexcept>
#include <utility>

#include "layers/activations.hpp"
#include "layers/batch_norm_relu_max_pool.hpp"
#include "layers/distribution_noise.hpp"
#include "layers/max_pool2d.hpp"
#include "layers/normalization/batch_norm.hpp"
#include "layers/normalization/batch_renorm.hpp"
#include "layers/normalization/filter_response_norm.hpp"
#include "layers/normalization/ghost_batch_norm.hpp"
#include "layers/normalization/group_norm.hpp"
#include "layers/normalization/instance_norm.hpp"
#include "layers/normalization/layer_norm.hpp"
#include "layers/normalization/sync_batch_norm.hpp"

namespace xgrad {

namespace {

bool after_linear(const NormActivation& block) { return block.sample_shape.size() == 1; }

template <class Layer1d, class Layer2d, class... Args>
std::shared_ptr<Module<float>> for_position(const NormActivation& block, Args&&... args) {
    const std::size_t channels = block.sample_shape.at(0);
    if (after_linear(block)) return std::make_shared<Layer1d>(channels, std::forward<Args>(args)...);
    return std::make_shared<Layer2d>(channels, std::forward<Args>(args)...);
}

std::string divisors_of(std::size_t n) {
    std::string out;
    for (std::size_t d = 1; d <= n; ++d) {
        if (n % d == 0) out += (out.empty() ? "" : ", ") + std::to_string(d);
    }
    return out;
}

BatchNormOptions batch_norm_options(const ModelConfig& config) { return {.momentum = config.bn_momentum}; }

std::shared_ptr<Module<float>> make_group_norm(const ModelConfig& config, const NormActivation& block) {
    const std::size_t channels = block.sample_shape.at(0);
    if (config.norm_groups == 0 || channels % config.norm_groups != 0) {
        throw std::invalid_argument(config.name + "'s " + block.norm_name + " (GroupNorm): --norm-groups " +
                                    std::to_string(config.norm_groups) + " does not divide its " +
                                    std::to_string(channels) + " channels (divisors of " + std::to_string(channels) +
                                    ": " + divisors_of(channels) + ")");
    }
    return std::make_shared<GroupNorm<float>>(config.norm_groups, channels);
}

// The layer of config.norm at `block`, or null for Norm::none and where the norm has no layer.
// InstanceNorm has weight and bias (affine), as every other norm here does, so that the norms
// differ in their statistics only; it normalizes by each instance's own statistics in eval too
// (no running statistics), as GroupNorm does.
std::shared_ptr<Module<float>> make_norm_layer(const ModelConfig& config, const NormActivation& block) {
    if (after_linear(block) && why_no_norm_after_linear(config.norm)) return nullptr;
    switch (config.norm) {
        case Norm::batch:
            if (config.sync_bn) return for_position<SyncBatchNorm1d<float>, SyncBatchNorm2d<float>>(block, batch_norm_options(config));
            return for_position<BatchNorm1d<float>, BatchNorm2d<float>>(block, batch_norm_options(config));
        case Norm::batch_renorm:
            return for_position<BatchRenorm1d<float>, BatchRenorm2d<float>>(block, config.renorm.options());
        case Norm::ghost: return for_position<GhostBatchNorm1d<float>, GhostBatchNorm2d<float>>(block, config.ghost_batch);
        case Norm::group: return make_group_norm(config, block);
        case Norm::layer: return std::make_shared<LayerNorm<float>>(block.sample_shape);
        case Norm::instance:
            return std::make_shared<InstanceNorm2d<float>>(block.sample_shape.at(0), InstanceNormOptions{.affine = true});
        case Norm::frn: return std::make_shared<FilterResponseNorm2d<float>>(block.sample_shape.at(0));
        case Norm::none: return nullptr;
    }
    throw std::invalid_argument("make_norm_layer: no Norm has the value " + std::to_string(static_cast<int>(config.norm)));
}

// The layer of config.norm followed by a ReLU in one node, or null when it has no such form.
std::shared_ptr<Module<float>> make_norm_relu_layer(const ModelConfig& config, const NormActivation& block) {
    if (config.norm != Norm::batch) return nullptr;
    if (config.sync_bn) return for_position<SyncBatchNormReLU1d<float>, SyncBatchNormReLU2d<float>>(block, batch_norm_options(config));
    return for_position<BatchNormReLU1d<float>, BatchNormReLU2d<float>>(block, batch_norm_options(config));
}

// The layer of config.norm followed by a ReLU and MaxPool2d(2) in one node, or null when it has no
// such form.
std::shared_ptr<Module<float>> make_norm_relu_pool_layer(const ModelConfig& config, const NormActivation& block) {
    if (config.norm != Norm::batch || config.sync_bn || after_linear(block)) return nullptr;
    return std::make_shared<BatchNormReLUMaxPool2d<float>>(block.sample_shape.at(0), batch_norm_options(config));
}

// The block's layers but the pool.
void add_unpooled(Sequential<float>& model, const ModelConfig& config, const NormActivation& block) {
    if (block.activation == Activation::relu && !config.noisy_bn) {
        if (auto fused = make_norm_relu_layer(config, block)) {
            model.add(block.norm_name, fused);
            return;
        }
    }
    auto norm = make_norm_layer(config, block);
    // FRN's layer ends in its TLU, which is the block's nonlinearity.
    const bool ends_in_activation = norm && config.norm == Norm::frn;
    if (ends_in_activation && block.activation != Activation::relu) {
        throw std::invalid_argument(config.name + "'s " + block.norm_name + ": FRN's TLU takes the place of a ReLU, and this layer is " +
                                    (block.activation ? "followed by another nonlinearity" : "followed by no ReLU"));
    }
    if (norm) {
        model.add(block.norm_name, norm);
        // The generator is seeded by make_model once every initialization draw is done.
        if (config.noisy_bn) model.add(noise_layer_name(block.norm_name), std::make_shared<DistributionNoise<float>>(0));
    }
    if (block.activation && !ends_in_activation) model.add(block.activation_name, make_activation(*block.activation));
}

}  // namespace

std::shared_ptr<Module<float>> make_activation(Activation activation) {
    switch (activation) {
        case Activation::relu: return std::make_shared<ReLU<float>>();
        case Activation::sigmoid: return std::make_shared<Sigmoid<float>>();
        case Activation::tanh: return std::make_shared<Tanh<float>>();
    }
    throw std::invalid_argument("make_activation: no Activation has the value " + std::to_string(static_cast<int>(activation)));
}

std::optional<std::string> why_no_norm_after_linear(Norm norm) {
    switch (norm) {
        case Norm::instance:
            return "InstanceNorm normalizes each (sample, channel) over its spatial positions, and a Linear's output has "
                   "one per feature: every output would be its bias";
        case Norm::frn: return "FilterResponseNorm2d normalizes over (H, W), which a Linear's output does not have";
        default: return std::nullopt;
    }
}

std::string noise_layer_name(const std::string& norm_name) {
    if (norm_name.starts_with("bn")) return "noise" + norm_name.substr(2);
    return "noise_" + norm_name;
}

bool removes_channel_constant(Norm norm) {
    return norm == Norm::batch || norm == Norm::batch_renorm || norm == Norm::ghost;
}

void add_norm_activation(Sequential<float>& model, const ModelConfig& config, const NormActivation& block) {
    if (block.pool_name && block.activation == Activation::relu && !config.noisy_bn) {
        if (auto fused = make_norm_relu_pool_layer(config, block)) {
            model.add(block.norm_name, fused);
            return;
        }
    }
    add_unpooled(model, config, block);
    if (block.pool_name) model.add(*block.pool_name, std::make_shared<MaxPool2d<float>>(2));
}

}  // namespace xgrad
