#include "layers/max_pool2d.hpp"

#include <algorithm>
#include <cmath>
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
    tbb::parallel_for(tbb::blocked_range<std::size_t>(0, planes), [&](const tbb::blocked_range<std::size_t>& r) {
        for (std::size_t p = r.begin(); p < r.end(); ++p) {
            const T* src = in + p * g.in_plane();
            for (std::size_t oh = 0; oh < g.oh; ++oh) {
                for (std::size_t ow = 0; ow < g.ow; ++ow) {
                    std::size_t best = oh * g.stride.h * g.w + ow * g.stride.w;
                    for (std::size_t i = 0; i < g.kernel.h; ++i) {
                        const std::size_t row = (oh * g.stride.h + i) * g.w + ow * g.stride.w;
                        for (std::size_t j = 0; j < g.kernel.w; ++j) {
                            // As torch's kernel: strictly greater keeps the first maximum; NaN wins.
                            if (src[row + j] > src[best] || std::isnan(src[row + j])) best = row + j;
                        }
                    }
                    const std::size_t o = p * g.out_plane() + oh * g.ow + ow;
                    y.data()[o] = src[best];
                    argmax[o] = static_cast<std::uint32_t>(best);
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
