#include "autodiff/log_softmax.hpp"

#include <algorithm>
#include <cmath>
#include <limits>

namespace xgrad {

template <class T>
Var<T> log_softmax(const Var<T>& x, std::ptrdiff_t axis) {
    const Shape shape = x.shape();
    const AxisSplit s = split_at_axis(shape, normalize_axis("log_softmax", axis, shape));
    xt::xarray<T> value = xt::xarray<T>::from_shape(shape);
    const T* in = x.value().data();
    T* out = value.data();
    for (std::size_t o = 0; o < s.outer; ++o) {
        for (std::size_t k = 0; k < s.inner; ++k) {
            const std::size_t base = o * s.along * s.inner + k;
            T top = -std::numeric_limits<T>::infinity();
            for (std::size_t i = 0; i < s.along; ++i) top = std::max(top, in[base + i * s.inner]);
            // Accumulate in double: a float sum over many classes loses digits the log then shows.
            double total = 0.0;
            for (std::size_t i = 0; i < s.along; ++i) total += std::exp(static_cast<double>(in[base + i * s.inner] - top));
            const T log_total = static_cast<T>(std::log(total));
            for (std::size_t i = 0; i < s.along; ++i) out[base + i * s.inner] = in[base + i * s.inner] - top - log_total;
        }
    }
    auto node = x.node();
    return Var<T>::from_op(std::move(value), "log_softmax", {node}, [node, s](const Node<T>& self, const xt::xarray<T>& grad_out) {
        // dx = g - softmax * sum(g) along the axis, with softmax = exp(output).
        xt::xarray<T> dx = xt::xarray<T>::from_shape(self.value.shape());
        const T* g = grad_out.data();
        const T* y = self.value.data();
        for (std::size_t o = 0; o < s.outer; ++o) {
            for (std::size_t k = 0; k < s.inner; ++k) {
                const std::size_t base = o * s.along * s.inner + k;
                double g_sum = 0.0;
                for (std::size_t i = 0; i < s.along; ++i) g_sum += g[base + i * s.inner];
                for (std::size_t i = 0; i < s.along; ++i) {
                    const std::size_t idx = base + i * s.inner;
                    dx.data()[idx] = g[idx] - std::exp(y[idx]) * static_cast<T>(g_sum);
                }
            }
        }
        accumulate_grad(*node, std::move(dx));
    });
}

template Var<float> log_softmax(const Var<float>&, std::ptrdiff_t);
template Var<double> log_softmax(const Var<double>&, std::ptrdiff_t);

}  // namespace xgrad
