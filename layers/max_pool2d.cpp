#include "layers/max_pool2d.hpp"

#include <algorithm>
#include <cstdint>
#include <stdexcept>
#include <vector>

#include <tbb/blocked_range.h>
#include <tbb/parallel_for.h>

#include "layers/grad_kernels.hpp"
#include "layers/pool_2x2.hpp"

namespace xgrad {

template <class T>
MaxPool2d<T>::MaxPool2d(Size2 kernel_size, std::optional<Size2> stride)
    : kernel_(kernel_size), stride_(stride.value_or(kernel_size)) {
    if (kernel_.h == 0 || kernel_.w == 0 || stride_.h == 0 || stride_.w == 0) {
        throw std::invalid_argument("MaxPool2d: kernel_size and stride must be positive, got kernel_size=" +
                                    kernel_.str() + ", stride=" + stride_.str());
    }
}

template <class T>
std::string MaxPool2d<T>::describe() const {
    return "MaxPool2d(kernel_size=" + kernel_.str() + ", stride=" + stride_.str() + ")";
}

namespace {

using pool_detail::pool_2x2_plane;
using pool_detail::select_bits;

// One window element against a row of outputs: for each k < n, element first + k·step of the
// input plane replaces best[k] (and its index, where[k]) if strictly greater, or if it is a NaN,
// as in torch's kernel. With the stride known at compile time (Step > 0) the loop vectorizes.
template <std::size_t Step, class T>
void take_larger(const T* src, std::size_t first, std::size_t stride, std::size_t n, T* __restrict best,
                 std::uint32_t* __restrict where) {
    const std::size_t step = Step > 0 ? Step : stride;
    for (std::size_t k = 0; k < n; ++k) {
        const auto at = static_cast<std::uint32_t>(first + k * step);
        const T v = src[at];
        const bool take = (v > best[k]) | (v != v);
        best[k] = select_bits(take, v, best[k]);
        where[k] = select_bits(take, at, where[k]);
    }
}

template <std::size_t Step, class T>
void pool_row(const WindowGeometry& g, const T* src, std::size_t oh, T* best, std::uint32_t* where) {
    const std::size_t origin = oh * g.stride.h * g.w;
    for (std::size_t k = 0; k < g.ow; ++k) {
        where[k] = static_cast<std::uint32_t>(origin + k * g.stride.w);
        best[k] = src[where[k]];
    }
    // The rest of the window in row-major order, so that the first of equal maxima is kept.
    for (std::size_t tap = 1; tap < g.kernel.h * g.kernel.w; ++tap) {
        const std::size_t first = origin + (tap / g.kernel.w) * g.w + tap % g.kernel.w;
        take_larger<Step>(src, first, g.stride.w, g.ow, best, where);
    }
}

}  // namespace

template <class T>
Var<T> MaxPool2d<T>::forward(const Var<T>& x) {
    const WindowGeometry g = pooling_geometry(this->where(), x.shape(), kernel_, stride_);
    const std::size_t planes = g.n * g.c;
    xt::xarray<T> y = xt::xarray<T>::from_shape({g.n, g.c, g.oh, g.ow});
    // For each output, the index of its arg-max within its input plane.
    std::vector<std::uint32_t> argmax(y.size());
    const T* in = x.value().data();
    const bool two_by_two = g.kernel == Size2(2) && g.stride == Size2(2);
    tbb::parallel_for(tbb::blocked_range<std::size_t>(0, planes), [&](const tbb::blocked_range<std::size_t>& r) {
        for (std::size_t p = r.begin(); p < r.end(); ++p) {
            const T* src = in + p * g.in_plane();
            T* best = y.data() + p * g.out_plane();
            std::uint32_t* where = argmax.data() + p * g.out_plane();
            if (two_by_two) {
                pool_2x2_plane(src, g.w, g.oh, g.ow, x.size() - p * g.in_plane(), best, where);
                continue;
            }
            for (std::size_t oh = 0; oh < g.oh; ++oh) {
                T* best_row = best + oh * g.ow;
                std::uint32_t* where_row = where + oh * g.ow;
                if (g.stride.w == 2) {
                    pool_row<2>(g, src, oh, best_row, where_row);
                } else if (g.stride.w == 1) {
                    pool_row<1>(g, src, oh, best_row, where_row);
                } else {
                    pool_row<0>(g, src, oh, best_row, where_row);
                }
            }
        }
    });
    auto xn = x.node();
    return Var<T>::from_op(std::move(y), "max_pool2d", {xn}, [xn, argmax = std::move(argmax), g, planes](const Node<T>&, const xt::xarray<T>& grad_out) {
        const bool add = prepare_grad_buffer(*xn);
        // Windows that do not overlap have one arg-max per input at most: onto zeros, a store.
        const bool store = !add && g.stride.h >= g.kernel.h && g.stride.w >= g.kernel.w;
        const T* gy = grad_out.data();
        tbb::parallel_for(tbb::blocked_range<std::size_t>(0, planes), [&](const tbb::blocked_range<std::size_t>& r) {
            for (std::size_t p = r.begin(); p < r.end(); ++p) {
                T* dst = xn->grad.data() + p * g.in_plane();
                if (!add) std::fill_n(dst, g.in_plane(), T(0));
                const std::size_t first = p * g.out_plane(), last = first + g.out_plane();
                if (store) {
                    for (std::size_t o = first; o < last; ++o) dst[argmax[o]] = gy[o];
                } else {
                    for (std::size_t o = first; o < last; ++o) dst[argmax[o]] += gy[o];
                }
            }
        });
    });
}

template class MaxPool2d<float>;
template class MaxPool2d<double>;

}  // namespace xgrad
