// Folding an eval-mode BatchNorm2d into the Conv2d before it, for inference. Conv then BN with
// running statistics is, per output channel o with s = gamma / sqrt(running_var + eps),
//   y = (W·x + b - running_mean)·s + beta = (W·s)·x + ((b - running_mean)·s + beta),
// a convolution with W' = W·s and b' = (b - running_mean)·s + beta (b = 0 for a conv without
// bias): one im2col + gemm, no BN pass over the output. W is the weight conv applies, so a
// weight-standardized conv folds into a plain one.
#pragma once

#include <memory>

#include "layers/normalization/batch_norm.hpp"
#include "layers/conv2d.hpp"

namespace xgrad {

// A new Conv2d, with bias, whose forward equals conv's followed by bn's in eval mode (whatever
// bn's mode). A ShapeError naming both layers unless bn has conv's out_channels features; a
// std::invalid_argument if bn keeps no running statistics.
template <class T>
std::shared_ptr<Conv2d<T>> fold_batch_norm(const Conv2d<T>& conv, const BatchNorm2d<T>& bn);

extern template std::shared_ptr<Conv2d<float>> fold_batch_norm(const Conv2d<float>&, const BatchNorm2d<float>&);
extern template std::shared_ptr<Conv2d<double>> fold_batch_norm(const Conv2d<double>&, const BatchNorm2d<double>&);

}  // namespace xgrad
