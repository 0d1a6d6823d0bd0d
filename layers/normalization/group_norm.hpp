// Group Normalization (Wu & He 2018) with torch.nn.GroupNorm's semantics: the C channels of an
// input (N, C, *) are cut into G groups of C/G consecutive channels, and each (sample, group) is
// normalized by its own mean and biased variance over its channels and all spatial positions; then
// y = weight_c·x̂ + bias_c per channel. No running statistics: training and eval compute the same.
// Built on the normalization stages by group_norm_kernel.hpp: rows per (n, c) with the per-channel
// affine map folded in, or, over short spatial extents, rows per group with it elementwise.
#pragma once

#include <cstddef>
#include <string>

#include "autodiff/var.hpp"
#include "layers/normalization/normalization_layer.hpp"

namespace xgrad {

struct GroupNormOptions {
    double eps = 1e-5;
    bool affine = true;  // parameters weight (1) and bias (0), C values each
};

template <class T>
class GroupNorm final : public NormalizationLayer<T> {
public:
    // A std::invalid_argument naming both numbers unless 0 < num_groups and num_groups divides
    // num_channels (torch: "num_channels must be divisible by num_groups").
    GroupNorm(std::size_t num_groups, std::size_t num_channels, GroupNormOptions options = {});

    // x of shape (N, C, *) with C = num_channels: a ShapeError naming the layer and both shapes
    // otherwise, and, as torch does, when N·(C/G)·spatial = 1 ("Expected more than 1 value per
    // channel when training", whatever the mode).
    Var<T> forward(const Var<T>& x) override;
    // torch's repr: "GroupNorm(32, 64, eps=1e-05, affine=True)".
    std::string describe() const override;

    std::size_t num_groups() const { return num_groups_; }
    std::size_t num_channels() const { return num_channels_; }
    const GroupNormOptions& options() const { return options_; }

private:
    std::size_t num_groups_;
    std::size_t num_channels_;
    GroupNormOptions options_;
};

}  // namespace xgrad
