// Cross-entropy of logits against integer class labels, averaged over the batch, as
// torch.nn.functional.cross_entropy(logits, labels). Log-softmax and the loss are one node:
// forward keeps the softmax (N·K doubles), backward is (softmax - one_hot(label)) / N.
#pragma once

#include <cstdint>

#include <xtensor/xarray.hpp>

#include "autodiff/var.hpp"

namespace xgrad {

// logits (N, K), labels (N) with values in [0, K); a 0-d result. A ShapeError for other shapes or
// an empty batch; std::out_of_range naming the label, its index and K for a label outside [0, K).
template <class T>
Var<T> cross_entropy(const Var<T>& logits, const xt::xarray<std::int64_t>& labels);

extern template Var<float> cross_entropy(const Var<float>&, const xt::xarray<std::int64_t>&);
extern template Var<double> cross_entropy(const Var<double>&, const xt::xarray<std::int64_t>&);

}  // namespace xgrad
