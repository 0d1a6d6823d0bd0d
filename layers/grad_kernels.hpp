// Kernels that add straight into a node's gradient, with no temporary: a gemm product
// (autodiff/gemm_into_grad.hpp) and per-channel sums. What Linear and Conv2d backward are made of.
#pragma once

#include <cstddef>

#include <xtensor/xarray.hpp>

#include "layers/normalization/channel_reduce.hpp"
#include "autodiff/gemm_into_grad.hpp"
#include "autodiff/node.hpp"

namespace xgrad {

// grad[c] += the sum of g over channel c of `shape` (a bias gradient).
template <class T>
void channel_sums_into_grad(Node<T>& target, const T* g, const ChannelShape& shape) {
    const bool add = prepare_grad_buffer(target);
    const std::vector<double> sums = channel_sum(g, shape);
    T* out = target.grad.data();
    for (std::size_t c = 0; c < sums.size(); ++c) out[c] = static_cast<T>(add ? out[c] + sums[c] : sums[c]);
}

}  // namespace xgrad
