#include "autodiff/reductions.hpp"

#include <algorithm>
#include <string>

#include <xtensor/xbroadcast.hpp>
#include <xtensor/xreducer.hpp>

namespace xgrad {

namespace {

// Sum (or, with `average`, mean) of x over `axes`, or over every axis when `axes` is null.
template <class T>
Var<T> reduce_sum(const char* op, const Var<T>& x, const Axes* axes, bool keepdims, bool average) {
    const Shape in_shape = x.shape();
    std::vector<std::size_t> reduced;
    if (!axes) {
        for (std::size_t i = 0; i < in_shape.size(); ++i) reduced.push_back(i);
    } else {
        for (auto a : *axes) reduced.push_back(normalize_axis(op, a, in_shape));
        std::sort(reduced.begin(), reduced.end());
        if (std::adjacent_find(reduced.begin(), reduced.end()) != reduced.end()) {
            throw ShapeError(std::string(op) + ": an axis is repeated for shape " + shape_str(in_shape));
        }
    }
    std::size_t count = 1;
    Shape kept_shape = in_shape;  // the result's shape with keepdims
    for (auto a : reduced) {
        count *= in_shape[a];
        kept_shape[a] = 1;
    }
    const T scale = average ? T(1) / static_cast<T>(count) : T(1);

    // An empty input sums to zeros (a mean to NaN, 0 · 1/0, as torch's): xtensor's reducer would
    // offset the null data pointer of an empty array, which is undefined behaviour.
    xt::xarray<T> value;
    if (x.size() == 0) {
        value = xt::xarray<T>::from_shape(kept_shape);
        value.fill(T(0) * scale);
    } else {
        value = xt::sum(x.value(), reduced) * scale;
    }
    value.reshape(kept_shape);
    if (!keepdims) {
        Shape out_shape;
        for (std::size_t i = 0; i < in_shape.size(); ++i) {
            if (!std::binary_search(reduced.begin(), reduced.end(), i)) out_shape.push_back(in_shape[i]);
        }
        value.reshape(out_shape);
    }
    auto in = x.node();
    return Var<T>::from_op(std::move(value), op, {in}, [in, kept_shape, in_shape, scale](const Node<T>&, const xt::xarray<T>& grad_out) {
        xt::xarray<T> g = grad_out;
        g.reshape(kept_shape);
        accumulate_grad(*in, xt::broadcast(g * scale, in_shape));
    });
}

}  // namespace

template <class T>
Var<T> sum(const Var<T>& x) {
    return reduce_sum("sum", x, nullptr, false, false);
}
template <class T>
Var<T> mean(const Var<T>& x) {
    return reduce_sum("mean", x, nullptr, false, true);
}
template <class T>
Var<T> sum(const Var<T>& x, const Axes& axes, bool keepdims) {
    return reduce_sum("sum", x, &axes, keepdims, false);
}
template <class T>
Var<T> mean(const Var<T>& x, const Axes& axes, bool keepdims) {
    return reduce_sum("mean", x, &axes, keepdims, true);
}

template <class T>
Var<T> max(const Var<T>& x, std::ptrdiff_t axis, bool keepdims) {
    const Shape in_shape = x.shape();
    const std::size_t ax = normalize_axis("max", axis, in_shape);
    if (in_shape[ax] == 0) throw ShapeError("max: axis " + std::to_string(axis) + " is empty in shape " + shape_str(in_shape));
    const AxisSplit s = split_at_axis(in_shape, ax);
    Shape out_shape = in_shape;
    if (keepdims) out_shape[ax] = 1;
    else out_shape.erase(out_shape.begin() + static_cast<std::ptrdiff_t>(ax));

    xt::xarray<T> value = xt::xarray<T>::from_shape(out_shape);
    std::vector<std::size_t> argmax(s.outer * s.inner);  // flat input index of each maximum
    const T* in_data = x.value().data();
    for (std::size_t o = 0; o < s.outer; ++o) {
        for (std::size_t k = 0; k < s.inner; ++k) {
            std::size_t best = o * s.along * s.inner + k;
            for (std::size_t i = 1; i < s.along; ++i) {
                const std::size_t idx = (o * s.along + i) * s.inner + k;
                if (in_data[idx] > in_data[best]) best = idx;
            }
            argmax[o * s.inner + k] = best;
            value.data()[o * s.inner + k] = in_data[best];
        }
    }
    auto in = x.node();
    return Var<T>::from_op(std::move(value), "max", {in}, [in, argmax = std::move(argmax)](const Node<T>&, const xt::xarray<T>& grad_out) {
        xt::xarray<T> dx = xt::zeros<T>(in->value.shape());
        for (std::size_t j = 0; j < argmax.size(); ++j) dx.data()[argmax[j]] += grad_out.data()[j];
        accumulate_grad(*in, std::move(dx));
    });
}

#define XGRAD_INSTANTIATE(T)                                                  \
    template Var<T> sum(const Var<T>&);                                       \
    template Var<T> mean(const Var<T>&);                                      \
    template Var<T> sum(const Var<T>&, const Axes&, bool);                    \
    template Var<T> mean(const Var<T>&, const Axes&, bool);                   \
    template Var<T> max(const Var<T>&, std::ptrdiff_t, bool);
XGRAD_INSTANTIATE(float)
XGRAD_INSTANTIATE(double)
#undef XGRAD_INSTANTIATE

}  // namespace xgrad
