// Weight Standardization (Qiao et al. 2019), the graph op that Conv2d applies to its weight when
// asked to (as timm's StdConv2d): each output filter w[o] standardized over its other dimensions
// (C_in, kh, kw),
//   w_hat[o] = (w[o] - mean(w[o])) / sqrt(var(w[o]) + eps),  var biased,
// with the gradient flowing through the mean and the variance to w. It is the normalization stages
// over the weight seen as (O, 1, C_in·kh·kw), one group per filter, without weight and bias, so the
// convolution that consumes w_hat keeps its own backward.
#pragma once

#include <string>

#include "autodiff/var.hpp"

namespace xgrad {

// weight of shape (O, ...) of rank >= 2; a ShapeError naming `where` otherwise, or when a filter
// has no element.
template <class T>
Var<T> standardize_weight(const Var<T>& weight, double eps = 1e-6, const std::string& where = "standardize_weight");

extern template Var<float> standardize_weight(const Var<float>&, double, const std::string&);
extern template Var<double> standardize_weight(const Var<double>&, double, const std::string&);

}  // namespace xgrad
