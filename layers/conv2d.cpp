#include "layers/conv2d.hpp"

#include <algorithm>
#include <cstddef>
#include <memory>
#include <stdexcept>
#include <type_traits>
#include <vector>

#include <tbb/blocked_range.h>
#include <tbb/parallel_for.h>

#include "autodiff/blas.hpp"
#include "layers/conv_backend.hpp"
#include "layers/grad_kernels.hpp"
#include "layers/normalization/weight_standardization.hpp"
#include "layers/python_repr.hpp"
#include "layers/short_filter_gradient.hpp"
#if XGRAD_HAVE_ONEDNN
#include "layers/onednn_convolution.hpp"
#endif

namespace xgrad {

namespace {

// The weight gradient is summed over the samples in this many groups of consecutive samples at
// most, each into its own partial sum that the threads can fill in parallel; the partials are added
// in group order. The groups depend on the batch and the weight's size alone, so the bits do not
// depend on the threads.
constexpr std::size_t kWeightGradientGroups = 16;
// Partial sums' elements, at most (16 MiB in float): a layer with a larger weight sums in fewer
// groups (a 256 → 256 3×3 convolution in 7, a 512 → 512 one in 1, whose products gemm still
// splits between the threads).
constexpr std::size_t kPartialBudget = std::size_t{1} << 22;

// The groups of consecutive samples a backward walks, each in one task: group k holds the samples
// [begin(k), begin(k + 1)). Without a weight gradient, no partial sums bound them.
struct SampleGroups {
    std::size_t samples;
    std::size_t count;

    SampleGroups(std::size_t batch, std::size_t weights, bool weight_gradient)
        : samples(batch),
          count(std::min({batch, kWeightGradientGroups,
                          weight_gradient ? std::max<std::size_t>(kPartialBudget / weights, 1) : batch})) {}
    std::size_t begin(std::size_t k) const { return samples * k / count; }
};

// dst (`size` elements) = (add ? dst : 0) + the `count` partial sums laid one after another from
// `partials`, added in their order, in parallel over the elements. With no partial sums (an empty
// batch), dst is 0 or unchanged.
template <class T>
void add_partial_sums(const T* partials, std::size_t count, std::size_t size, bool add, T* dst) {
    tbb::parallel_for(tbb::blocked_range<std::size_t>(0, size), [&](const tbb::blocked_range<std::size_t>& r) {
        if (!add) std::fill(dst + r.begin(), dst + r.end(), T(0));
        for (std::size_t k = 0; k < count; ++k) {
            const T* partial = partials + k * size;
            for (std::size_t i = r.begin(); i < r.end(); ++i) dst[i] += partial[i];
        }
    });
}

struct Span {
    std::size_t begin = 0;
    std::size_t end = 0;
};

// The output positions o in [0, out) that read input position o * stride + offset - pad inside
// [0, in), i.e. not in the padding.
Span valid_outputs(std::size_t out, std::size_t stride, std::size_t offset, std::size_t pad, std::size_t in) {
    const auto s = static_cast<std::ptrdiff_t>(stride);
    const std::ptrdiff_t lo = static_cast<std::ptrdiff_t>(pad) - static_cast<std::ptrdiff_t>(offset);
    const std::ptrdiff_t hi = static_cast<std::ptrdiff_t>(in) + lo;
    const std::ptrdiff_t begin = lo > 0 ? (lo + s - 1) / s : 0;
    const std::ptrdiff_t end = std::min(hi > 0 ? (hi + s - 1) / s : 0, static_cast<std::ptrdiff_t>(out));
    return {static_cast<std::size_t>(std::min(begin, end)), static_cast<std::size_t>(end)};
}

// A row of one kernel tap's outputs in a channel plane: its outputs [row + cols.begin,
// row + cols.end) read the input at `in`, in + stride.w, ...; the rest of the row reads the
// padding, and the whole row does when `inside` is false.
struct TapRow {
    std::size_t tap;  // i * kw + j
    std::size_t row;  // oh * OW
    Span cols;
    bool inside;
    std::size_t in;
};

// Calls f(i, j, rows, valid) for each kernel tap (i, j): its outputs (oh, ow) with oh in rows and
// ow in valid read the input inside the image; the others read the padding.
template <class F>
void for_each_tap(const WindowGeometry& g, F&& f) {
    for (std::size_t i = 0; i < g.kernel.h; ++i) {
        const Span rows = valid_outputs(g.oh, g.stride.h, i, g.padding.h, g.h);
        for (std::size_t j = 0; j < g.kernel.w; ++j) f(i, j, rows, valid_outputs(g.ow, g.stride.w, j, g.padding.w, g.w));
    }
}

// Calls f(TapRow) for each kernel tap and output row of one channel plane.
template <class F>
void for_each_tap_row(const WindowGeometry& g, F&& f) {
    for_each_tap(g, [&](std::size_t i, std::size_t j, Span rows, Span cols) {
        for (std::size_t oh = 0; oh < g.oh; ++oh) {
            const bool inside = oh >= rows.begin && oh < rows.end && cols.begin < cols.end;
            const std::size_t in = inside ? (oh * g.stride.h + i - g.padding.h) * g.w + cols.begin * g.stride.w + j - g.padding.w : 0;
            f(TapRow{i * g.kernel.w + j, oh * g.ow, cols, inside, in});
        }
    });
}

// With stride 1 and OW == W, tap (i, j)'s output at plane index d reads input d + shift.
std::ptrdiff_t plane_shift(const WindowGeometry& g, std::size_t i, std::size_t j) {
    return (static_cast<std::ptrdiff_t>(i) - static_cast<std::ptrdiff_t>(g.padding.h)) * static_cast<std::ptrdiff_t>(g.w) +
           static_cast<std::ptrdiff_t>(j) - static_cast<std::ptrdiff_t>(g.padding.w);
}

// Zeroes, in a tap's plane of outputs, the columns outside `valid` of the rows in `rows`: the
// few outputs at a row's ends whose input is the padding. Column by column down the rows, since a
// fill per row would be a call to memset for one or two elements, hundreds of thousands of times
// a step.
template <class T>
void zero_padding_columns(T* plane, const WindowGeometry& g, Span rows, Span valid) {
    const auto zero_column = [&](std::size_t column) {
        for (std::size_t oh = rows.begin; oh < rows.end; ++oh) plane[oh * g.ow + column] = T(0);
    };
    for (std::size_t column = 0; column < valid.begin; ++column) zero_column(column);
    for (std::size_t column = valid.end; column < g.ow; ++column) zero_column(column);
}

// One sample's im2col matrix, (C * kh * kw, OH * OW): row (c, i, j), column (oh, ow) holds
// x[c, oh * sh + i - ph, ow * sw + j - pw] of the sample, 0 in the padding.
template <class T>
void im2col(const T* x, const WindowGeometry& g, T* cols) {
    const std::size_t taps = g.kernel.h * g.kernel.w;
    const std::size_t ld = g.out_plane();
    const std::size_t stride = g.stride.w;
    // Stride 1 with the output as wide as the input ("same" convolutions, the seed CNN's):
    // a tap's rows are one shifted copy of the plane, whose few columns that fall in the
    // padding are zeroed afterwards. One long copy instead of a short one per row.
    const bool shifted_plane = g.stride.h == 1 && stride == 1 && g.ow == g.w;
    for (std::size_t c = 0; c < g.c; ++c) {
        T* dst = cols + c * taps * ld;
        const T* src = x + c * g.in_plane();
        if (shifted_plane) {
            for_each_tap(g, [&](std::size_t i, std::size_t j, Span rows, Span valid) {
                const std::ptrdiff_t shift = plane_shift(g, i, j);
                T* out = dst + (i * g.kernel.w + j) * ld;
                const auto plane = static_cast<std::ptrdiff_t>(g.in_plane());
                const auto first = std::max<std::ptrdiff_t>(static_cast<std::ptrdiff_t>(rows.begin * g.ow), -shift);
                const auto last = std::min<std::ptrdiff_t>(static_cast<std::ptrdiff_t>(rows.end * g.ow), plane - shift);
                std::fill_n(out, rows.begin * g.ow, T(0));
                if (first < last) std::copy(src + (first + shift), src + (last + shift), out + first);
                std::fill(out + rows.end * g.ow, out + g.out_plane(), T(0));
                zero_padding_columns(out, g, rows, valid);
            });
            continue;
        }
        for_each_tap_row(g, [&](const TapRow& r) {
            T* out = dst + r.tap * ld + r.row;
            if (!r.inside) {
                std::fill_n(out, g.ow, T(0));
                return;
            }
            std::fill_n(out, r.cols.begin, T(0));
            std::fill(out + r.cols.end, out + g.ow, T(0));
            const T* in = src + r.in;
            const std::size_t n = r.cols.end - r.cols.begin;
            if (stride == 1) {
                std::copy_n(in, n, out + r.cols.begin);
            } else {
                for (std::size_t k = 0; k < n; ++k) out[r.cols.begin + k] = in[k * stride];
            }
        });
    }
}

// The adjoint of im2col: adds each column entry back to the input position of the sample it was
// read from, into dx (overwriting the sample's dx unless `add`). Zeroes the entries of `cols` that
// im2col would have read from the padding.
template <class T>
void col2im(T* cols, const WindowGeometry& g, T* dx, bool add) {
    const std::size_t taps = g.kernel.h * g.kernel.w;
    const std::size_t ld = g.out_plane();
    const std::size_t stride = g.stride.w;
    const bool shifted_plane = g.stride.h == 1 && stride == 1 && g.ow == g.w;  // as in im2col
    for (std::size_t c = 0; c < g.c; ++c) {
        T* src = cols + c * taps * ld;
        T* dst = dx + c * g.in_plane();
        if (!add) std::fill_n(dst, g.in_plane(), T(0));
        if (shifted_plane) {
            // One long add per tap, once the padding's entries are zero (adding 0 changes nothing).
            for_each_tap(g, [&](std::size_t i, std::size_t j, Span rows, Span valid) {
                const std::ptrdiff_t shift = plane_shift(g, i, j);
                T* in = src + (i * g.kernel.w + j) * ld;
                zero_padding_columns(in, g, rows, valid);
                const auto plane = static_cast<std::ptrdiff_t>(g.in_plane());
                const auto first = std::max<std::ptrdiff_t>(static_cast<std::ptrdiff_t>(rows.begin * g.ow), -shift);
                const auto last = std::min<std::ptrdiff_t>(static_cast<std::ptrdiff_t>(rows.end * g.ow), plane - shift);
                for (std::ptrdiff_t d = first; d < last; ++d) dst[d + shift] += in[d];
            });
            continue;
        }
        for_each_tap_row(g, [&](const TapRow& r) {
            if (!r.inside) return;
            const T* in = src + r.tap * ld + r.row + r.cols.begin;
            T* out = dst + r.in;
            for (std::size_t k = 0; k < r.cols.end - r.cols.begin; ++k) out[k * stride] += in[k];
        });
    }
}

}  // namespace

template <class T>
Conv2d<T>::Conv2d(std::size_t in_channels, std::size_t out_channels, Size2 kernel_size, Size2 stride, Size2 padding,
                  bool bias, Rng& rng)
    : Conv2d(in_channels, out_channels, kernel_size, Conv2dOptions{.stride = stride, .padding = padding, .bias = bias},
             rng) {}

template <class T>
Conv2d<T>::Conv2d(std::size_t in_channels, std::size_t out_channels, Size2 kernel_size, const Conv2dOptions& options,
                  Rng& rng)
    : in_channels_(in_channels),
      out_channels_(out_channels),
      kernel_(kernel_size),
      stride_(options.stride),
      padding_(options.padding) {
    if (in_channels == 0 || out_channels == 0 || kernel_.h == 0 || kernel_.w == 0 || stride_.h == 0 || stride_.w == 0) {
        throw std::invalid_argument("Conv2d: channels, kernel_size and stride must be positive, got in_channels=" +
                                    std::to_string(in_channels) + ", out_channels=" + std::to_string(out_channels) +
                                    ", kernel_size=" + kernel_.str() + ", stride=" + stride_.str());
    }
    if (options.weight_standardization) {
        if (in_channels * kernel_.h * kernel_.w < 2) {
            throw std::invalid_argument("Conv2d: weight standardization needs more than 1 weight per filter, got "
                                        "in_channels=" + std::to_string(in_channels) + " and kernel_size=" +
                                        kernel_.str());
        }
        standardization_eps_ = options.weight_standardization_eps;
    }
    weight_ = &this->register_parameter(
        "weight", Var<T>(xt::xarray<T>::from_shape({out_channels, in_channels, kernel_.h, kernel_.w})));
    if (options.bias) bias_ = &this->register_parameter("bias", Var<T>(xt::xarray<T>::from_shape({out_channels})));
    reset_parameters(rng);
}

template <class T>
void Conv2d<T>::reset_parameters(Rng& rng) {
    default_init_(weight_->mutable_value(), bias_ ? &bias_->mutable_value() : nullptr, rng);
}

template <class T>
std::string Conv2d<T>::describe() const {
    return "Conv2d(" + std::to_string(in_channels_) + ", " + std::to_string(out_channels_) +
           ", kernel_size=" + kernel_.str() + ", stride=" + stride_.str() +
           (padding_ == Size2(0) ? "" : ", padding=" + padding_.str()) + (bias_ ? "" : ", bias=False") +
           (standardization_eps_ ? ", weight_standardization=True, weight_standardization_eps=" +
                                       python_float(*standardization_eps_)
                                 : "") +
           ")";
}

template <class T>
Var<T> Conv2d<T>::applied_weight() const {
    return standardization_eps_ ? standardize_weight(*weight_, *standardization_eps_, this->where()) : *weight_;
}

template <class T>
Var<T> Conv2d<T>::forward(const Var<T>& x) {
    const WindowGeometry g = window_geometry(this->where(), x.shape(), in_channels_, kernel_, stride_, padding_);
    const std::size_t out = out_channels_;
#if XGRAD_HAVE_ONEDNN
    if constexpr (std::is_same_v<T, float>) {
        // oneDNN's primitives need a sample; an empty batch takes the own path.
        if (conv_backend() == ConvBackend::onednn && g.n > 0) return onednn_conv2d(x, applied_weight(), bias_, g, out);
    }
#endif
    const std::size_t rows = g.c * g.kernel.h * g.kernel.w;
    const std::size_t plane = g.out_plane();
    const std::size_t in_sample = g.c * g.in_plane();

    xt::xarray<T> y = xt::xarray<T>::from_shape({g.n, out, g.oh, g.ow});
    const Var<T> weight = applied_weight();
    const T* w = weight.value().data();
    const T* xv = x.value().data();
    // Sample by sample, in parallel, straight into NCHW: y[n] (out, OH * OW) = bias broadcast
    // along rows, then += W · the sample's columns, built just before (in L2 at the seed CNN's
    // sizes: 225 KB for conv2).
    tbb::parallel_for(tbb::blocked_range<std::size_t>(0, g.n), [&](const tbb::blocked_range<std::size_t>& r) {
        const auto cols = std::make_unique_for_overwrite<T[]>(rows * plane);
        for (std::size_t b = r.begin(); b < r.end(); ++b) {
            im2col(xv + b * in_sample, g, cols.get());
            T* yb = y.data() + b * out * plane;
            for (std::size_t o = 0; o < out; ++o) std::fill_n(yb + o * plane, plane, bias_ ? bias_->value()(o) : T(0));
            gemm<T>(false, false, out, plane, rows, T(1), w, rows, cols.get(), plane, T(1), yb, plane);
        }
    });

    std::vector<typename Var<T>::NodePtr> inputs{x.node(), weight.node()};
    if (bias_) inputs.push_back(bias_->node());
    return Var<T>::from_op(std::move(y), "conv2d", inputs, [inputs, g, out, rows, plane, in_sample](const Node<T>&, const xt::xarray<T>& grad_out) {
        Node<T>& xn = *inputs[0];
        Node<T>& wn = *inputs[1];
        const T* gy = grad_out.data();
        if (inputs.size() > 2 && inputs[2]->requires_grad) channel_sums_into_grad(*inputs[2], gy, ChannelShape{g.n, out, plane});
        if (!xn.requires_grad && !wn.requires_grad) return;
        const bool add_dx = xn.requires_grad && prepare_grad_buffer(xn);
        const bool add_dw = wn.requires_grad && prepare_grad_buffer(wn);
        const std::size_t weights = out * rows;
        const SampleGroups groups(g.n, weights, wn.requires_grad);
        // Each group's first term overwrites its partial sum.
        const auto partials = std::make_unique_for_overwrite<T[]>(wn.requires_grad ? groups.count * weights : 0);
        // Each sample's columns serve twice while they are in cache: built from x for its term of
        // dW (gy[n] · columnsᵀ, added into its group's partial sum), then overwritten by
        // Wᵀ · gy[n], the columns of its dx, which col2im adds back into dx.
        tbb::parallel_for(std::size_t{0}, groups.count, [&](std::size_t k) {
            const auto cols = std::make_unique_for_overwrite<T[]>(rows * plane);
            for (std::size_t b = groups.begin(k); b < groups.begin(k + 1); ++b) {
                const T* gyb = gy + b * out * plane;
                if (wn.requires_grad) {
                    im2col(xn.value.data() + b * in_sample, g, cols.get());
                    const bool add = b != groups.begin(k);
                    T* partial = partials.get() + k * weights;
                    if (rows < kShortFilterWeights) {
                        add_short_filter_terms(gyb, cols.get(), out, rows, plane, add, partial);
                    } else {
                        gemm<T>(false, true, out, rows, plane, T(1), gyb, plane, cols.get(), plane, add ? T(1) : T(0),
                                partial, rows);
                    }
                }
                if (xn.requires_grad) {
                    gemm<T>(true, false, rows, plane, out, T(1), wn.value.data(), rows, gyb, plane, T(0), cols.get(),
                            plane);
                    col2im(cols.get(), g, xn.grad.data() + b * in_sample, add_dx);
                }
            }
        });
        if (wn.requires_grad) add_partial_sums(partials.get(), groups.count, weights, add_dw, wn.grad.data());
    });
}

template class Conv2d<float>;
template class Conv2d<double>;

}  // namespace xgrad
