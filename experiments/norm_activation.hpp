// The block that follows each hidden Linear or Conv2d of the experiments' models: the model's norm
// layer, the noise layer of noisy BN after it, the nonlinearity, and a pool. Where a Norm becomes a
// layer, where BN and ReLU (and a 2×2 pool after them) become one layer when nothing comes between
// them, and what each Norm means after a Linear.
#pragma once

#include <memory>
#include <optional>
#include <string>

#include "autodiff/shape.hpp"
#include "experiments/model_config.hpp"
#include "layers/sequential.hpp"

namespace xgrad {

enum class Activation { relu, sigmoid, tanh };

struct NormActivation {
    // The norm layer's name, "bn<suffix>" in the built-in models whatever the Norm; the noise
    // layer after it is noise_layer_name(norm_name).
    std::string norm_name;
    // What the norm layer sees of one sample: {features} after a Linear, {channels, H, W} after a
    // Conv2d (LayerNorm normalizes all of it, with weight and bias of this shape, as torch's
    // LayerNorm([C, H, W]) does).
    Shape sample_shape;
    // None where the norm layer is not followed by a nonlinearity (a spec's norm before a pool).
    std::optional<Activation> activation = Activation::relu;
    std::string activation_name;
    // The name of a MaxPool2d(2) after the block (the seed CNN's pool1 and pool2), or none.
    std::optional<std::string> pool_name = std::nullopt;
};

// The name of the noise layer of noisy BN after the norm layer `norm_name`: "noise<suffix>" after
// "bn<suffix>", "noise_<name>" after any other name (a spec's "3").
std::string noise_layer_name(const std::string& norm_name);

// Why `norm` has no layer after a Linear, whose output has one value per sample and feature, or
// nullopt where it has one: InstanceNorm would normalize each such value by itself, and FRN is
// defined over (H, W) only. At such a position the block is the nonlinearity alone.
std::optional<std::string> why_no_norm_after_linear(Norm norm);

// Whether `norm` removes a constant added to each feature or channel before it, as the batch
// statistics per channel of BatchNorm, Batch Renorm and Ghost BN do: a bias before such a layer
// gets no gradient and changes no output. Statistics over several features (group, layer) remove
// only the constants' mean over them.
bool removes_channel_constant(Norm norm);

// The layer of `activation`: ReLU, Sigmoid or Tanh.
std::shared_ptr<Module<float>> make_activation(Activation activation);

// Appends to `model`, as `config` says: the norm layer (none for Norm::none), DistributionNoise
// after it when config.noisy_bn, then the activation if there is one, then the pool if there is one.
// A norm with a fused ReLU form (BN only) and a ReLU with nothing between them are that one layer,
// named as the norm layer: the same values, gradients and state_dict, one pass over the activations
// fewer each way; BN (not SyncBatchNorm) with a ReLU and a pool, the one layer
// BatchNormReLUMaxPool2d, named so too, which outputs the pooled values. FRN's layer ends in its
// TLU, which takes the place of a ReLU: it must be followed by one. A std::invalid_argument naming the model, the layer and
// both numbers when config.norm_groups does not divide the layer's channels.
void add_norm_activation(Sequential<float>& model, const ModelConfig& config, const NormActivation& block);

}  // namespace xgrad
