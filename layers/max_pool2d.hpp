// MaxPool2d: the largest value of each window of NCHW inputs, as torch.nn.MaxPool2d without
// padding, dilation or ceil_mode. The gradient goes to the arg-max of each window (the first
// one on ties; a NaN in a window is its maximum).
#pragma once

#include <optional>
#include <string>

#include "autodiff/var.hpp"
#include "layers/module.hpp"
#include "layers/window.hpp"

namespace xgrad {

template <class T>
class MaxPool2d : public Module<T> {
public:
    // The stride defaults to the kernel size, as in torch.
    explicit MaxPool2d(Size2 kernel_size, std::optional<Size2> stride = std::nullopt);

    // A ShapeError naming this layer unless x is (N, C, H, W) with room for one window.
    Var<T> forward(const Var<T>& x) override;
    std::string describe() const override;

    Size2 kernel_size() const { return kernel_; }
    Size2 stride() const { return stride_; }

private:
    Size2 kernel_;
    Size2 stride_;
};

extern template class MaxPool2d<float>;
extern template class MaxPool2d<double>;

}  // namespace xgrad
