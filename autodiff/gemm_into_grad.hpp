// A gemm product added straight into a node's gradient (or written there when it has none), with
// no temporary: the backward of matmul, Linear and Conv2d.
#pragma once

#include <cstddef>

#include "autodiff/blas.hpp"
#include "autodiff/node.hpp"

namespace xgrad {

// grad += op(A) op(B), grad seen as a row-major (m, n) matrix.
template <class T>
void gemm_into_grad(Node<T>& target, bool trans_a, bool trans_b, std::size_t m, std::size_t n, std::size_t k,
                    const T* a, std::size_t lda, const T* b, std::size_t ldb) {
    const T beta = prepare_grad_buffer(target) ? T(1) : T(0);
    gemm<T>(trans_a, trans_b, m, n, k, T(1), a, lda, b, ldb, beta, target.grad.data(), n);
}

}  // namespace xgrad
