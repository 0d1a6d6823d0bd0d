// Conv2d: 2-D convolution (cross-correlation) of NCHW inputs, as torch.nn.Conv2d with
// dilation 1 and groups 1; weight (out_channels, in_channels, kh, kw). A sample at a time:
// im2col + gemm forward; backward: im2col + gemm for the weight (dot products for filters of
// fewer than 16 weights, layers/short_filter_gradient.hpp), gemm + col2im for the input,
// per-channel sums for the bias.
// Optionally with Weight Standardization (timm's StdConv2d): the convolution applies each output
// filter of the weight standardized over (in_channels, kh, kw).
#pragma once

#include <cstddef>
#include <optional>
#include <string>

#include "autodiff/var.hpp"
#include "layers/init.hpp"
#include "layers/module.hpp"
#include "layers/window.hpp"

namespace xgrad {

// Conv2d's settings beyond its sizes: Conv2d(1, 32, 3, {.padding = 1, .weight_standardization = true}).
struct Conv2dOptions {
    Size2 stride = 1;
    Size2 padding = 0;
    bool bias = true;
    // Weight Standardization (Qiao et al. 2019; layers/normalization/weight_standardization.hpp):
    // every forward convolves with the weight standardized per output filter, with this eps; the
    // parameter (and the state_dict) holds the unstandardized weight, as timm's StdConv2d.
    bool weight_standardization = false;
    double weight_standardization_eps = 1e-6;
};

template <class T>
class Conv2d : public Module<T> {
public:
    // Parameters get torch's default init from `rng`.
    Conv2d(std::size_t in_channels, std::size_t out_channels, Size2 kernel_size, Size2 stride = 1, Size2 padding = 0,
           bool bias = true, Rng& rng = default_rng());
    // A std::invalid_argument also for weight standardization over a single weight per filter
    // (in_channels·kh·kw = 1), which would standardize every weight to 0.
    Conv2d(std::size_t in_channels, std::size_t out_channels, Size2 kernel_size, const Conv2dOptions& options,
           Rng& rng = default_rng());

    // A ShapeError naming this layer unless x is (N, in_channels, H, W) with room for one window.
    Var<T> forward(const Var<T>& x) override;
    std::string describe() const override;
    void reset_parameters(Rng& rng = default_rng());

    std::size_t in_channels() const { return in_channels_; }
    std::size_t out_channels() const { return out_channels_; }
    Size2 kernel_size() const { return kernel_; }
    Size2 stride() const { return stride_; }
    Size2 padding() const { return padding_; }
    // The eps of weight standardization; nullopt without it.
    std::optional<double> weight_standardization_eps() const { return standardization_eps_; }
    // The weight the convolution applies: weight(), or its standardization (a graph op).
    Var<T> applied_weight() const;
    Var<T>& weight() { return *weight_; }
    const Var<T>& weight() const { return *weight_; }
    // Null when constructed without bias.
    Var<T>* bias() { return bias_; }
    const Var<T>* bias() const { return bias_; }

private:
    std::size_t in_channels_;
    std::size_t out_channels_;
    Size2 kernel_;
    Size2 stride_;
    Size2 padding_;
    std::optional<double> standardization_eps_;
    Var<T>* weight_;
    Var<T>* bias_ = nullptr;
};

extern template class Conv2d<float>;
extern template class Conv2d<double>;

}  // namespace xgrad
