// Kernels that add straight into a node's gradient, with no temporary: a gemm product and
// per-channel sums. What Linear and Conv2d backward are made of.
#pragma once

#include <cstddef>

#include <xtensor/xarray.hpp>

#include "autodiff/blas.hpp"
#include "autodiff/channel_reduce.hpp"
#include "autodiff/node.hpp"

namespace xgrad {

// grad += op(A) op(B), grad seen as a row-major (m, n) matrix.
template <class T>
void gemm_into_grad(Node<T>& target, bool trans_a, bool trans_b, std::size_t m, std::size_t n, std::size_t k,
                    const T* a, std::size_t lda, const T* b, std::size_t ldb) {
    const T beta = prepare_grad_buffer(target) ? T(1) : T(0);
    gemm<T>(trans_a, trans_b, m, n, k, T(1), a, lda, b, ldb, beta, target.grad.data(), n);
}

// grad[c] += the sum of g over channel c of `shape` (a bias gradient).
template <class T>
void channel_sums_into_grad(Node<T>& target, const T* g, const ChannelShape& shape) {
    const bool add = prepare_grad_buffer(target);
    const std::vector<double> sums = channel_sum(g, shape);
    T* out = target.grad.data();
    for (std::size_t c = 0; c < sums.size(); ++c) out[c] = static_cast<T>(add ? out[c] + sums[c] : sums[c]);
}

}  // namespace xgrad
