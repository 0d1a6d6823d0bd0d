#include "layers/batch_norm_kernel.hpp"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstddef>
#include <type_traits>

#include <tbb/blocked_range2d.h>
#include <tbb/parallel_for.h>

namespace xgrad {

namespace {

// Runs shorter than this (S) are too short to vectorize alone: a row's C·S elements are then
// walked as one run, with one coefficient per element.
constexpr std::size_t kShortRun = 16;
constexpr std::size_t kSerialBelow = 1 << 16;  // elements; smaller tensors spawn no task
constexpr std::size_t kTaskElems = 1 << 14;    // elements per parallel task, at least

// a·b + c in one rounding where the target has a fast FMA; elsewhere std::fma would be a slow
// library call that also stops vectorization.
template <class T>
T mul_add(T a, T b, T c) {
#if defined(FP_FAST_FMA) && defined(FP_FAST_FMAF)
    return std::fma(a, b, c);
#else
    return a * b + c;
#endif
}

// Per-channel values as the runs of for_each_run index them: one per channel, or, for short
// runs, one per (c, s) position of a row (each channel's value repeated S times).
template <class T>
std::vector<T> spread(const std::vector<double>& per_channel, const ChannelShape& sh) {
    const std::size_t rep = sh.s < kShortRun ? sh.s : 1;
    std::vector<T> out(per_channel.size() * rep);
    for (std::size_t c = 0; c < per_channel.size(); ++c) {
        std::fill_n(out.begin() + static_cast<std::ptrdiff_t>(c * rep), rep, static_cast<T>(per_channel[c]));
    }
    return out;
}

// Calls run(per_element, offset, length, first) on the contiguous runs that cover rows [n0, n1)
// of channels [c0, c1): each (n, c) row of S elements, with first = c; or, for short runs, the
// channels' part of each row n, with first = c0·S and per_element = std::true_type (the
// coefficients of element k of the run are at first + k rather than at first).
template <class Run>
void for_each_run(const ChannelShape& sh, std::size_t n0, std::size_t n1, std::size_t c0, std::size_t c1,
                  const Run& run) {
    for (std::size_t n = n0; n < n1; ++n) {
        if (sh.s < kShortRun) {
            run(std::true_type{}, (n * sh.c + c0) * sh.s, (c1 - c0) * sh.s, c0 * sh.s);
        } else {
            for (std::size_t c = c0; c < c1; ++c) run(std::false_type{}, (n * sh.c + c) * sh.s, sh.s, c);
        }
    }
}

// Calls body(n0, n1, c0, c1) on blocks covering the tensor: in parallel tasks of at least
// kTaskElems elements (whole rows when runs are short), or once in this thread for small tensors.
template <class Body>
void for_each_block(const ChannelShape& sh, const Body& body) {
    if (sh.size() < kSerialBelow) {
        body(std::size_t{0}, sh.n, std::size_t{0}, sh.c);
        return;
    }
    const std::size_t cgrain = sh.s < kShortRun ? sh.c : 1;
    const std::size_t ngrain = std::max<std::size_t>(1, kTaskElems / (cgrain * sh.s));
    tbb::parallel_for(tbb::blocked_range2d<std::size_t>(0, sh.n, ngrain, 0, sh.c, cgrain),
                      [&](const tbb::blocked_range2d<std::size_t>& r) {
                          body(r.rows().begin(), r.rows().end(), r.cols().begin(), r.cols().end());
                      });
}

// out = (in - centre)·scale + shift, per channel.
template <class T>
struct AffinePass {
    std::vector<T> centre;
    std::vector<T> scale;
    std::vector<T> shift;

    void run(const ChannelShape& sh, const T* in, T* out) const {
        for_each_block(sh, [&](std::size_t n0, std::size_t n1, std::size_t c0, std::size_t c1) {
            for_each_run(sh, n0, n1, c0, c1, [&](auto per_element, std::size_t off, std::size_t len, std::size_t first) {
                constexpr std::size_t step = decltype(per_element)::value ? 1 : 0;
                const T* ce = centre.data() + first;
                const T* sc = scale.data() + first;
                const T* sf = shift.data() + first;
                const T* src = in + off;
                T* dst = out + off;
                for (std::size_t k = 0; k < len; ++k) {
                    dst[k] = mul_add(src[k] - ce[k * step], sc[k * step], sf[k * step]);
                }
            });
        });
    }
};

// dx = dy·alpha + ((x - centre)·k + shift), per channel: the training backward's dx.
template <class T>
struct InputGradPass {
    std::vector<T> alpha;
    std::vector<T> centre;
    std::vector<T> k;
    std::vector<T> shift;

    void run(const ChannelShape& sh, const T* dy, const T* x, T* dx) const {
        for_each_block(sh, [&](std::size_t n0, std::size_t n1, std::size_t c0, std::size_t c1) {
            for_each_run(sh, n0, n1, c0, c1, [&](auto per_element, std::size_t off, std::size_t len, std::size_t first) {
                constexpr std::size_t step = decltype(per_element)::value ? 1 : 0;
                const T* al = alpha.data() + first;
                const T* ce = centre.data() + first;
                const T* kk = k.data() + first;
                const T* sf = shift.data() + first;
                const T* g = dy + off;
                const T* src = x + off;
                T* dst = dx + off;
                for (std::size_t i = 0; i < len; ++i) {
                    dst[i] = mul_add(g[i], al[i * step], mul_add(src[i] - ce[i * step], kk[i * step], sf[i * step]));
                }
            });
        });
    }
};

// The mean rounded to T, the elementwise passes' centre.
template <class T>
double centre_of(double mean) {
    return static_cast<double>(static_cast<T>(mean));
}

// y = gamma·(x - mean)·invstd + beta as an AffinePass.
template <class T>
AffinePass<T> forward_pass(const ChannelShape& sh, const BatchNormStats& st, const T* gamma, const T* beta) {
    std::vector<double> centre(sh.c), alpha(sh.c), shift(sh.c);
    for (std::size_t c = 0; c < sh.c; ++c) {
        centre[c] = centre_of<T>(st.mean[c]);
        alpha[c] = (gamma ? static_cast<double>(gamma[c]) : 1.0) * st.invstd[c];
        shift[c] = (beta ? static_cast<double>(beta[c]) : 0.0) - (st.mean[c] - centre[c]) * alpha[c];
    }
    return {spread<T>(centre, sh), spread<T>(alpha, sh), spread<T>(shift, sh)};
}

template <class T>
void backward(const ChannelShape& sh, const T* dy, const T* x, const T* gamma, const BatchNormStats& st, T* dx,
              T* dgamma, T* dbeta, bool training) {
    // Per channel {Σ dy, Σ dy·(x - mean)}: dbeta, dgamma / invstd, and what the training dx needs.
    std::vector<std::array<double, 2>> sums;
    if ((training && dx) || dgamma || dbeta) sums = channel_sum_and_centered_dot(dy, x, sh, st.mean);
    for (std::size_t c = 0; c < sh.c; ++c) {
        if (dgamma) dgamma[c] = static_cast<T>(sums[c][1] * st.invstd[c]);
        if (dbeta) dbeta[c] = static_cast<T>(sums[c][0]);
    }
    if (!dx) return;

    std::vector<double> alpha(sh.c);
    for (std::size_t c = 0; c < sh.c; ++c) alpha[c] = (gamma ? static_cast<double>(gamma[c]) : 1.0) * st.invstd[c];
    if (!training) {
        const std::vector<double> zeros(sh.c, 0.0);
        AffinePass<T>{spread<T>(zeros, sh), spread<T>(alpha, sh), spread<T>(zeros, sh)}.run(sh, dy, dx);
        return;
    }
    // dx = alpha·(dy - Σdy/n - x̂·Σ(dy·x̂)/n) with x̂ = (x - mean)·invstd, regrouped around centre.
    const double n = static_cast<double>(sh.per_channel());
    std::vector<double> centre(sh.c), k(sh.c), shift(sh.c);
    for (std::size_t c = 0; c < sh.c; ++c) {
        centre[c] = centre_of<T>(st.mean[c]);
        k[c] = -alpha[c] * st.invstd[c] * st.invstd[c] * sums[c][1] / n;
        shift[c] = -alpha[c] * sums[c][0] / n - k[c] * (st.mean[c] - centre[c]);
    }
    InputGradPass<T>{spread<T>(alpha, sh), spread<T>(centre, sh), spread<T>(k, sh), spread<T>(shift, sh)}.run(sh, dy, x,
                                                                                                             dx);
}

}  // namespace

template <class T>
BatchNormStats batch_norm_forward_train(const ChannelShape& shape, const T* x, const T* gamma, const T* beta,
                                        double eps, T* y, std::optional<RunningStats<T>> running) {
    BatchNormStats st{channel_mean(x, shape), std::vector<double>(shape.c)};
    const std::vector<double> sq = channel_centered_sq_sum(x, shape, st.mean);
    const double n = static_cast<double>(shape.per_channel());
    for (std::size_t c = 0; c < shape.c; ++c) st.invstd[c] = 1.0 / std::sqrt(sq[c] / n + eps);
    if (running) {
        const double f = running->factor;
        for (std::size_t c = 0; c < shape.c; ++c) {
            running->mean[c] = static_cast<T>((1.0 - f) * static_cast<double>(running->mean[c]) + f * st.mean[c]);
            running->var[c] = static_cast<T>((1.0 - f) * static_cast<double>(running->var[c]) + f * sq[c] / (n - 1.0));
        }
    }
    forward_pass(shape, st, gamma, beta).run(shape, x, y);
    return st;
}

template <class T>
BatchNormStats batch_norm_forward_eval(const ChannelShape& shape, const T* x, const T* gamma, const T* beta,
                                       const T* running_mean, const T* running_var, double eps, T* y) {
    BatchNormStats st{std::vector<double>(running_mean, running_mean + shape.c), std::vector<double>(shape.c)};
    for (std::size_t c = 0; c < shape.c; ++c) st.invstd[c] = 1.0 / std::sqrt(static_cast<double>(running_var[c]) + eps);
    forward_pass(shape, st, gamma, beta).run(shape, x, y);
    return st;
}

template <class T>
void batch_norm_backward_train(const ChannelShape& shape, const T* dy, const T* x, const T* gamma,
                               const BatchNormStats& stats, T* dx, T* dgamma, T* dbeta) {
    backward(shape, dy, x, gamma, stats, dx, dgamma, dbeta, true);
}

template <class T>
void batch_norm_backward_eval(const ChannelShape& shape, const T* dy, const T* x, const T* gamma,
                              const BatchNormStats& stats, T* dx, T* dgamma, T* dbeta) {
    backward(shape, dy, x, gamma, stats, dx, dgamma, dbeta, false);
}

#define XGRAD_BATCH_NORM_KERNELS(T)                                                                                  \
    template BatchNormStats batch_norm_forward_train(const ChannelShape&, const T*, const T*, const T*, double, T*,  \
                                                     std::optional<RunningStats<T>>);                                \
    template BatchNormStats batch_norm_forward_eval(const ChannelShape&, const T*, const T*, const T*, const T*,     \
                                                    const T*, double, T*);                                           \
    template void batch_norm_backward_train(const ChannelShape&, const T*, const T*, const T*, const BatchNormStats&, \
                                            T*, T*, T*);                                                             \
    template void batch_norm_backward_eval(const ChannelShape&, const T*, const T*, const T*, const BatchNormStats&,  \
                                           T*, T*, T*);
XGRAD_BATCH_NORM_KERNELS(float)
XGRAD_BATCH_NORM_KERNELS(double)
#undef XGRAD_BATCH_NORM_KERNELS

}  // namespace xgrad
