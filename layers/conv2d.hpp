// Conv2d: 2-D convolution (cross-correlation) of NCHW inputs, as torch.nn.Conv2d with
// dilation 1 and groups 1; weight (out_channels, in_channels, kh, kw). im2col + gemm forward;
// backward: gemm for the weight, gemm + col2im for the input, per-channel sums for the bias.
#pragma once

#include <cstddef>
#include <string>

#include "autodiff/var.hpp"
#include "layers/init.hpp"
#include "layers/module.hpp"
#include "layers/window.hpp"

namespace xgrad {

template <class T>
class Conv2d : public Module<T> {
public:
    // Parameters get torch's default init from `rng`.
    Conv2d(std::size_t in_channels, std::size_t out_channels, Size2 kernel_size, Size2 stride = 1, Size2 padding = 0,
           bool bias = true, Rng& rng = default_rng());

    // A ShapeError naming this layer unless x is (N, in_channels, H, W) with room for one window.
    Var<T> forward(const Var<T>& x) override;
    std::string describe() const override;
    void reset_parameters(Rng& rng = default_rng());

    std::size_t in_channels() const { return in_channels_; }
    std::size_t out_channels() const { return out_channels_; }
    Size2 kernel_size() const { return kernel_; }
    Size2 stride() const { return stride_; }
    Size2 padding() const { return padding_; }
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
    Var<T>* weight_;
    Var<T>* bias_ = nullptr;
};

extern template class Conv2d<float>;
extern template class Conv2d<double>;

}  // namespace xgrad
