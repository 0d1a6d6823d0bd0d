#include "layers/max_pool2d.hpp"

#include <algorithm>
#include <cstdint>
#include <stdexcept>
#include <vector>

#include <tbb/blocked_range.h>
#include <tbb/parallel_for.h>

#include "layers/grad_kernels.hpp"

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

// One window element against a row of outputs: for each k < n, element first + k·step of the
// input plane replaces best[k] (and its index, where[k]) if strictly greater, or if it is a NaN,
// as in torch's kernel. Branch-free and with the stride known at compile time (Step > 0) the
// loop vectorizes: on real data the comparison is a coin toss that a branch would mispredict.
template <std::size_t Step, class T>
void take_larger(const T* src, std::size_t first, std::size_t stride, std::size_t n, T* __restrict best,
                 std::uint32_t* __restrict where) {
    const std::size_t step = Step > 0 ? Step : stride;
    for (std::size_t k = 0; k < n; ++k) {
        const auto at = static_cast<std::uint32_t>(first + k * step);
        const T v = src[at];
        const bool take = (v > best[k]) | (v != v);
        best[k] = take ? v : best[k];
        where[k] = take ? at : where[k];
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

// Whether candidate v (at row-major index iv of the plane) beats best (at ib) under torch's
// sequential rule, which amounts to: the last NaN of the window if it has one, else its first
// maximum. Unlike the rule of take_larger, it does not need the candidates in row-major order.
template <class T>
bool beats(T v, std::uint32_t iv, T best, std::uint32_t ib) {
    const bool v_nan = v != v, best_nan = best != best;
    return (v_nan & (!best_nan | (iv > ib))) | (!v_nan & !best_nan & ((v > best) | ((v == best) & (iv < ib))));
}

// Windows two columns wide that tile the plane (stride = kernel, H = OH·kh, W = OW·2; the seed
// CNN's 2×2 pooling), in two passes of long vectorizable loops instead of OH short rows of OW
// outputs: down each column of a window row (kh rows of W elements), then across the two column
// winners of each output, which lie at 2t and 2t + 1 for output t of the plane.
template <class T>
void pool_tiled_plane(const WindowGeometry& g, const T* src, T* __restrict best, std::uint32_t* __restrict where,
                      T* __restrict column_best, std::uint32_t* __restrict column_where) {
    for (std::size_t oh = 0; oh < g.oh; ++oh) {
        T* cb = column_best + oh * g.w;
        std::uint32_t* cw = column_where + oh * g.w;
        const std::size_t top = oh * g.kernel.h * g.w;
        for (std::size_t x = 0; x < g.w; ++x) {
            cw[x] = static_cast<std::uint32_t>(top + x);
            cb[x] = src[cw[x]];
        }
        for (std::size_t i = 1; i < g.kernel.h; ++i) take_larger<1>(src, top + i * g.w, 1, g.w, cb, cw);
    }
    for (std::size_t t = 0; t < g.out_plane(); ++t) {
        const T left = column_best[2 * t], right = column_best[2 * t + 1];
        const std::uint32_t left_at = column_where[2 * t], right_at = column_where[2 * t + 1];
        const bool take = beats(right, right_at, left, left_at);
        best[t] = take ? right : left;
        where[t] = take ? right_at : left_at;
    }
}

}  // namespace

template <class T>
Var<T> MaxPool2d<T>::forward(const Var<T>& x) {
    const WindowGeometry g = window_geometry(this->where(), x.shape(), std::nullopt, kernel_, stride_, Size2(0));
    if (g.in_plane() > UINT32_MAX) {
        throw ShapeError(this->where() + ": input planes of more than 2^32 elements are not supported, got " +
                         shape_str(x.shape()));
    }
    const std::size_t planes = g.n * g.c;
    xt::xarray<T> y = xt::xarray<T>::from_shape({g.n, g.c, g.oh, g.ow});
    // For each output, the index of its arg-max within its input plane.
    std::vector<std::uint32_t> argmax(y.size());
    const T* in = x.value().data();
    const bool tiled = g.stride == g.kernel && g.h == g.oh * g.kernel.h && g.w == g.ow * g.kernel.w && g.kernel.w == 2;
    tbb::parallel_for(tbb::blocked_range<std::size_t>(0, planes), [&](const tbb::blocked_range<std::size_t>& r) {
        std::vector<T> column_best(tiled ? g.oh * g.w : 0);
        std::vector<std::uint32_t> column_where(column_best.size());
        for (std::size_t p = r.begin(); p < r.end(); ++p) {
            const T* src = in + p * g.in_plane();
            T* best = y.data() + p * g.out_plane();
            std::uint32_t* where = argmax.data() + p * g.out_plane();
            if (tiled) {
                pool_tiled_plane(g, src, best, where, column_best.data(), column_where.data());
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
        const T* gy = grad_out.data();
        tbb::parallel_for(tbb::blocked_range<std::size_t>(0, planes), [&](const tbb::blocked_range<std::size_t>& r) {
            for (std::size_t p = r.begin(); p < r.end(); ++p) {
                T* dst = xn->grad.data() + p * g.in_plane();
                if (!add) std::fill_n(dst, g.in_plane(), T(0));
                for (std::size_t o = p * g.out_plane(); o < (p + 1) * g.out_plane(); ++o) dst[argmax[o]] += gy[o];
            }
        });
    });
}

template class MaxPool2d<float>;
template class MaxPool2d<double>;

}  // namespace xgrad
