// Instance Normalization (Ulyanov, Vedaldi & Lempitsky 2016) with torch.nn.InstanceNorm1d/2d's
// semantics (torch 1.13): each (sample, channel) of an input (N, C, *) is normalized by its own mean
// and biased variance over the spatial positions; with affine, then y = weight_c·x̂ + bias_c.
// With track_running_stats, training also moves running_mean and running_var (C values) by the
// mean over the samples of the instances' means and unbiased variances, and eval normalizes with
// them as BatchNorm's eval does; without it, eval normalizes each instance by its own statistics,
// as training does. Like torch 1.13, num_batches_tracked exists with track_running_stats (so the
// state_dict has torch's names) and stays 0, and momentum cannot be None (torch 1.13's
// instance_norm takes a float).
// Built on the normalization stages: Grouping::per_sample(shape, C) with move_running_statistics
// per instance; eval with running statistics is normalize_with over Grouping::per_channel.
#pragma once

#include <cstddef>
#include <optional>
#include <string>

#include "autodiff/var.hpp"
#include "layers/normalization/normalization_layer.hpp"

namespace xgrad {

struct InstanceNormOptions {
    double eps = 1e-5;
    // running = (1 - momentum)·running + momentum·batch. nullopt (torch's None) is rejected.
    std::optional<double> momentum = 0.1;
    bool affine = false;
    bool track_running_stats = false;
};

// torch's _InstanceNorm: the state and forward of InstanceNorm1d and InstanceNorm2d. Parameters
// `weight` (1) and `bias` (0) when affine; buffers `running_mean` (0), `running_var` (1) and the
// counter `num_batches_tracked` (0) when track_running_stats.
template <class T>
class InstanceNorm : public NormalizationLayer<T> {
public:
    // x of shape (N, C, *spatial) or, without the batch dim, (C, *spatial), with C = num_features:
    // a ShapeError naming the layer and both shapes otherwise, or when an instance has a single
    // value and its own statistics are used (torch: "Expected more than 1 spatial element when
    // training"). torch 1.13 normalizes an input with another C when affine and
    // track_running_stats are both off; xgrad rejects it: num_features is the layer's contract.
    Var<T> forward(const Var<T>& x) override;
    // torch's repr: "InstanceNorm2d(64, eps=1e-05, momentum=0.1, affine=False, track_running_stats=False)".
    std::string describe() const override;

    std::size_t num_features() const { return num_features_; }
    const InstanceNormOptions& options() const { return options_; }

protected:
    // `kind` names the class; inputs have `spatial_dims` spatial dims, named `spatial` in errors
    // ("L", "H, W"). A std::invalid_argument naming the layer for momentum nullopt or no feature.
    InstanceNorm(const char* kind, std::size_t spatial_dims, const char* spatial, std::size_t num_features,
                 InstanceNormOptions options);

private:
    const char* kind_;
    std::size_t spatial_dims_;
    const char* spatial_;
    std::size_t num_features_;
    InstanceNormOptions options_;
};

// Over (N, C, L) or (C, L): statistics per (sample, channel) over L.
template <class T>
class InstanceNorm1d final : public InstanceNorm<T> {
public:
    explicit InstanceNorm1d(std::size_t num_features, InstanceNormOptions options = {})
        : InstanceNorm<T>("InstanceNorm1d", 1, "L", num_features, options) {}
};

// Over (N, C, H, W) or (C, H, W): statistics per (sample, channel) over (H, W).
template <class T>
class InstanceNorm2d final : public InstanceNorm<T> {
public:
    explicit InstanceNorm2d(std::size_t num_features, InstanceNormOptions options = {})
        : InstanceNorm<T>("InstanceNorm2d", 2, "H, W", num_features, options) {}
};

}  // namespace xgrad
