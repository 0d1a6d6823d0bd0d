// Conv2d<float>'s convolution as a graph op by oneDNN (layers/conv_backend.hpp): NCHW in and out,
// as Conv2d holds its tensors; each product reorders to and from the layouts oneDNN's kernels
// choose. Compiled only in builds with oneDNN. Primitives are created once per shape and thread
// count; those of the 16 shapes used last are kept.
#pragma once

#include <cstddef>

#include "autodiff/var.hpp"
#include "layers/window.hpp"

namespace xgrad {

// y = conv(x, weight) + bias (null: none) over g (whose N > 0), with its backward: the input
// gradient, the weight's and the bias's, each for the inputs that require one.
Var<float> onednn_conv2d(const Var<float>& x, const Var<float>& weight, const Var<float>* bias, const WindowGeometry& g,
                         std::size_t out_channels);

}  // namespace xgrad
