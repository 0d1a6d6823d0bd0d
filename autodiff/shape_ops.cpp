#include "autodiff/shape_ops.hpp"

#include <algorithm>
#include <string>

#include <xtensor/xmanipulation.hpp>

namespace xgrad {

template <class T>
Var<T> reshape(const Var<T>& x, const std::vector<std::ptrdiff_t>& shape) {
    const Shape in_shape = x.shape();
    Shape out_shape(shape.size());
    std::size_t known = 1;
    std::ptrdiff_t inferred = -1;
    for (std::size_t i = 0; i < shape.size(); ++i) {
        if (shape[i] == -1 && inferred < 0) {
            inferred = static_cast<std::ptrdiff_t>(i);
        } else if (shape[i] < 0) {
            throw ShapeError("reshape: bad target shape for input " + shape_str(in_shape) +
                             " (only one -1 is allowed, and no other negative size)");
        } else {
            out_shape[i] = static_cast<std::size_t>(shape[i]);
            known *= out_shape[i];
        }
    }
    if (inferred >= 0 && known != 0) out_shape[static_cast<std::size_t>(inferred)] = x.size() / known;
    if (element_count(out_shape) != x.size()) {
        throw ShapeError("reshape: cannot reshape " + shape_str(in_shape) + " (" + std::to_string(x.size()) +
                         " elements) to " + shape_str(shape));
    }
    xt::xarray<T> value = x.value();
    value.reshape(out_shape);
    auto in = x.node();
    return Var<T>::from_op(std::move(value), "reshape", {in}, [in, in_shape](const Node<T>&, const xt::xarray<T>& grad_out) {
        xt::xarray<T> g = grad_out;
        g.reshape(in_shape);
        accumulate_grad(*in, std::move(g));
    });
}

template <class T>
Var<T> permute(const Var<T>& x, const std::vector<std::size_t>& order) {
    const Shape in_shape = x.shape();
    std::vector<std::size_t> sorted = order;
    std::sort(sorted.begin(), sorted.end());
    bool is_permutation = sorted.size() == in_shape.size();
    for (std::size_t i = 0; is_permutation && i < sorted.size(); ++i) is_permutation = sorted[i] == i;
    if (!is_permutation) {
        throw ShapeError("permute: " + shape_str(order) + " is not a permutation of the axes of shape " +
                         shape_str(in_shape));
    }
    std::vector<std::size_t> inverse(order.size());
    for (std::size_t i = 0; i < order.size(); ++i) inverse[order[i]] = i;
    xt::xarray<T> value = xt::transpose(x.value(), order);
    auto in = x.node();
    return Var<T>::from_op(std::move(value), "permute", {in}, [in, inverse](const Node<T>&, const xt::xarray<T>& grad_out) {
        accumulate_grad(*in, xt::transpose(grad_out, inverse));
    });
}

template <class T>
Var<T> transpose(const Var<T>& x) {
    const std::size_t rank = x.dim();
    if (rank < 2) throw ShapeError("transpose: needs at least 2 axes, got shape " + shape_str(x.shape()));
    std::vector<std::size_t> order(rank);
    for (std::size_t i = 0; i < rank; ++i) order[i] = i;
    std::swap(order[rank - 1], order[rank - 2]);
    return permute(x, order);
}

#define XGRAD_INSTANTIATE(T)                                                      \
    template Var<T> reshape(const Var<T>&, const std::vector<std::ptrdiff_t>&);   \
    template Var<T> permute(const Var<T>&, const std::vector<std::size_t>&);      \
    template Var<T> transpose(const Var<T>&);
XGRAD_INSTANTIATE(float)
XGRAD_INSTANTIATE(double)
#undef XGRAD_INSTANTIATE

}  // namespace xgrad
