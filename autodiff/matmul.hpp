// Matrix product of 2-D Vars through OpenBLAS gemm, forward and backward.
#pragma once

#include "autodiff/elementwise_ops.hpp"
#include "autodiff/var.hpp"

namespace xgrad {

// (n, k) x (k, m) -> (n, m). Anything else is a ShapeError naming both shapes.
template <class T>
Var<T> matmul(const Var<T>& a, const Var<T>& b);

template <Operand A, Operand B>
    requires(Expression<A> || Expression<B>)
auto matmul(const A& a, const B& b) {
    return matmul(Var<element_t<A>>(a), Var<element_t<B>>(b));
}

}  // namespace xgrad
