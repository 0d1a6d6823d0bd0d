#include "autodiff/matmul.hpp"

#include "autodiff/blas.hpp"

namespace xgrad {

namespace {

// Adds op(A) op(B) into the node's gradient, or writes it there if it has none yet: no temporary.
template <class T>
void accumulate_product(Node<T>& target, bool trans_a, bool trans_b, std::size_t m, std::size_t n, std::size_t k,
                        const T* a, std::size_t lda, const T* b, std::size_t ldb) {
    const T beta = target.has_grad ? T(1) : T(0);
    if (!target.has_grad) {
        target.grad = xt::xarray<T>::from_shape(target.value.shape());
        target.has_grad = true;
    }
    gemm<T>(trans_a, trans_b, m, n, k, T(1), a, lda, b, ldb, beta, target.grad.data(), n);
}

}  // namespace

template <class T>
Var<T> matmul(const Var<T>& a, const Var<T>& b) {
    if (a.dim() != 2 || b.dim() != 2 || a.shape()[1] != b.shape()[0]) {
        throw ShapeError("matmul: cannot multiply " + shape_str(a.shape()) + " by " + shape_str(b.shape()) +
                         " (expected (n, k) and (k, m))");
    }
    const std::size_t n = a.shape()[0], k = a.shape()[1], m = b.shape()[1];
    xt::xarray<T> value = xt::xarray<T>::from_shape({n, m});
    if (k == 0) value.fill(T(0));
    else gemm<T>(false, false, n, m, k, T(1), a.value().data(), k, b.value().data(), m, T(0), value.data(), m);
    auto an = a.node(), bn = b.node();
    return Var<T>::from_op(std::move(value), "matmul", {an, bn}, [an, bn, n, k, m](const Node<T>&, const xt::xarray<T>& grad_out) {
        const T* g = grad_out.data();
        if (an->requires_grad) accumulate_product(*an, false, true, n, k, m, g, m, bn->value.data(), m);  // g b^T
        if (bn->requires_grad) accumulate_product(*bn, true, false, k, m, n, an->value.data(), k, g, m);  // a^T g
    });
}

template Var<float> matmul(const Var<float>&, const Var<float>&);
template Var<double> matmul(const Var<double>&, const Var<double>&);

}  // namespace xgrad
