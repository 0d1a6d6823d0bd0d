#include "autodiff/matmul.hpp"

#include "autodiff/gemm_into_grad.hpp"

namespace xgrad {

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
        if (an->requires_grad) gemm_into_grad(*an, false, true, n, k, m, g, m, bn->value.data(), m);  // g b^T
        if (bn->requires_grad) gemm_into_grad(*bn, true, false, k, m, n, an->value.data(), k, g, m);  // a^T g
    });
}

template Var<float> matmul(const Var<float>&, const Var<float>&);
template Var<double> matmul(const Var<double>&, const Var<double>&);

}  // namespace xgrad
