#include "layers/batch_norm_kernel.hpp"

#include <algorithm>
#include <array>
#include <bit>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <type_traits>

#include <tbb/blocked_range.h>
#include <tbb/blocked_range2d.h>
#include <tbb/parallel_for.h>

namespace xgrad {

namespace {

// Runs shorter than this (S) are too short to vectorize alone: a row's C·S elements are then
// walked as one run, with one coefficient per element.
constexpr std::size_t kShortRun = 16;
constexpr std::size_t kSerialBelow = 1 << 16;  // elements; smaller tensors spawn no task
constexpr std::size_t kTaskElems = 1 << 14;    // elements per parallel task, at least
// A channel block's bytes, over all the tensors a kernel reads and writes, that a core's cache
// (L2) keeps between the kernel's passes over the block.
constexpr std::size_t kCachedBlockBytes = 1 << 20;

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

// (x - centre)·scale + shift: the forward's normalization, and the expression a fused ReLU's
// backward recomputes its mask with, so that the mask is the forward's bit for bit.
template <class T>
T affine(T x, T centre, T scale, T shift) {
    return mul_add(x - centre, scale, shift);
}

// The graph's ReLU backward, dy where the ReLU's input v is > 0 and +0 elsewhere, as a bit mask:
// GCC compiles `v > 0 ? dy : 0` in the sums' loop to a branch, which the random signs of v
// mispredict and which stops vectorization.
template <class T>
T relu_grad(T dy, T v) {
    using Bits = std::conditional_t<sizeof(T) == 4, std::uint32_t, std::uint64_t>;
    const Bits keep = Bits(0) - static_cast<Bits>(v > T(0));
    return std::bit_cast<T>(std::bit_cast<Bits>(dy) & keep);
}

// The channels one step of a kernel covers: a block [begin, end), in the calling thread, or all
// of them (whole), the step then being parallel over the whole tensor.
struct Channels {
    std::size_t begin;
    std::size_t end;
    bool whole;
};

// Runs kernel(Channels), a sequence of steps (per-channel sums, per-channel arithmetic, an
// elementwise pass), over the tensor in one of two ways:
//  - fused: channel blocks in parallel, each block through all the steps while its slab is in
//    cache, so that each tensor is read from memory once. Taken when a channel's elements are
//    whole runs of rows (the reduction's runs layout), a block of one channel fits
//    kCachedBlockBytes, and there are channels enough to keep the threads balanced;
//  - in passes: all channels at once, each step parallel over the whole tensor.
// Both give the same bits: the sums of a block are those of the whole tensor
// (channel_sums_serial), and an elementwise result does not depend on who computes it.
template <class Kernel>
void walk(const ChannelShape& sh, std::size_t bytes_per_element, const Kernel& kernel) {
    const std::size_t slab = std::max<std::size_t>(1, sh.per_channel() * bytes_per_element);
    const auto threads = static_cast<std::size_t>(available_threads());
    const bool serial = sh.size() < kSerialBelow || threads <= 1;
    const bool fused = channel_partition(sh).layout == ChannelLayout::runs && slab <= kCachedBlockBytes &&
                       (serial || sh.c >= 4 * threads);
    if (!fused) {
        kernel(Channels{0, sh.c, true});
        return;
    }
    // Channels per block: as many as the cache holds, few enough to balance the threads.
    std::size_t block = kCachedBlockBytes / slab;
    if (!serial) block = std::min(block, sh.c / (4 * threads));
    const auto blocks = [&](std::size_t c0, std::size_t c1) {
        for (std::size_t c = c0; c < c1; c += block) kernel(Channels{c, std::min(c1, c + block), false});
    };
    if (serial) {
        blocks(0, sh.c);
        return;
    }
    tbb::parallel_for(tbb::blocked_range<std::size_t>(0, sh.c, block),
                      [&](const tbb::blocked_range<std::size_t>& r) { blocks(r.begin(), r.end()); });
}

// out[c] = the K sums of term over channel c, for the channels of ch.
template <std::size_t K, class Term>
void reduce(const ChannelShape& sh, const Channels& ch, const Term& term, std::vector<std::array<double, K>>& out) {
    if (ch.whole) {
        out = channel_sums<K>(sh, term);
        return;
    }
    std::fill(out.begin() + static_cast<std::ptrdiff_t>(ch.begin), out.begin() + static_cast<std::ptrdiff_t>(ch.end),
              std::array<double, K>{});
    channel_sums_serial<K>(sh, ch.begin, ch.end, term, out.data() + ch.begin);
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

// Calls body(n0, n1, c0, c1) on blocks covering the channels of ch: a channel block as one
// block; all channels in parallel tasks of at least kTaskElems elements (whole rows when runs
// are short), or as one block for small tensors.
template <class Body>
void for_each_block(const ChannelShape& sh, const Channels& ch, const Body& body) {
    if (!ch.whole || sh.size() < kSerialBelow) {
        body(std::size_t{0}, sh.n, ch.begin, ch.end);
        return;
    }
    const std::size_t cgrain = sh.s < kShortRun ? sh.c : 1;
    const std::size_t ngrain = std::max<std::size_t>(1, kTaskElems / (cgrain * sh.s));
    tbb::parallel_for(tbb::blocked_range2d<std::size_t>(0, sh.n, ngrain, 0, sh.c, cgrain),
                      [&](const tbb::blocked_range2d<std::size_t>& r) {
                          body(r.rows().begin(), r.rows().end(), r.cols().begin(), r.cols().end());
                      });
}

// One coefficient per channel, in T, laid out as for_each_run indexes it: by channel, or, for
// short runs, by (c, s) position in a row (the channel's value repeated S times).
template <class T>
class RunCoefficients {
public:
    explicit RunCoefficients(const ChannelShape& sh) : repeat_(sh.s < kShortRun ? sh.s : 1), values_(sh.c * repeat_) {}
    void set(std::size_t c, double value) {
        std::fill_n(values_.begin() + static_cast<std::ptrdiff_t>(c * repeat_), repeat_, static_cast<T>(value));
    }
    const T* from(std::size_t first) const { return values_.data() + first; }
    T at(std::size_t c) const { return values_[c * repeat_]; }

private:
    std::size_t repeat_;
    std::vector<T> values_;
};

// out = (in - centre)·alpha + shift per channel, followed by a ReLU if Relu.
template <class T>
struct AffinePass {
    RunCoefficients<T> centre, alpha, shift;

    explicit AffinePass(const ChannelShape& sh) : centre(sh), alpha(sh), shift(sh) {}

    // Channel c's output for in = v, before the ReLU.
    T at(std::size_t c, T v) const { return affine(v, centre.at(c), alpha.at(c), shift.at(c)); }

    template <bool Relu = false>
    void run(const ChannelShape& sh, const Channels& ch, const T* in, T* out) const {
        for_each_block(sh, ch, [&](std::size_t n0, std::size_t n1, std::size_t c0, std::size_t c1) {
            for_each_run(sh, n0, n1, c0, c1, [&](auto per_element, std::size_t off, std::size_t len, std::size_t first) {
                constexpr std::size_t step = decltype(per_element)::value ? 1 : 0;
                const T* ce = centre.from(first);
                const T* al = alpha.from(first);
                const T* sf = shift.from(first);
                const T* src = in + off;
                T* dst = out + off;
                for (std::size_t i = 0; i < len; ++i) {
                    const T v = affine(src[i], ce[i * step], al[i * step], sf[i * step]);
                    dst[i] = Relu ? (v > T(0) ? v : T(0)) : v;  // the graph's ReLU: NaN and -0 give +0
                }
            });
        });
    }
};

// dx = g·alpha + ((x - centre)·k + shift), per channel: the training backward's dx. g is dy or,
// with a ReLU after the BN (Relu), dy gated by the ReLU's input, which `mask` (the forward's
// AffinePass) recomputes from x.
template <class T>
struct InputGradPass {
    RunCoefficients<T> alpha, centre, k, shift;

    explicit InputGradPass(const ChannelShape& sh) : alpha(sh), centre(sh), k(sh), shift(sh) {}

    // XTerm false: dx = g·alpha alone (eval), x read only for the mask, so that a non-finite x
    // cannot turn a gated 0 into a NaN through (x - centre)·0.
    template <bool Relu, bool XTerm = true>
    void run(const ChannelShape& sh, const Channels& ch, const T* dy, const T* x, const AffinePass<T>* mask,
             T* dx) const {
        for_each_block(sh, ch, [&](std::size_t n0, std::size_t n1, std::size_t c0, std::size_t c1) {
            for_each_run(sh, n0, n1, c0, c1, [&](auto per_element, std::size_t off, std::size_t len, std::size_t first) {
                constexpr std::size_t step = decltype(per_element)::value ? 1 : 0;
                const T* al = alpha.from(first);
                const T* ce = centre.from(first);
                const T* kk = k.from(first);
                const T* sf = shift.from(first);
                const T* g = dy + off;
                const T* src = x + off;
                T* dst = dx + off;
                const T* mc = Relu ? mask->centre.from(first) : nullptr;
                const T* ma = Relu ? mask->alpha.from(first) : nullptr;
                const T* ms = Relu ? mask->shift.from(first) : nullptr;
                for (std::size_t i = 0; i < len; ++i) {
                    T gi = g[i];
                    if constexpr (Relu) gi = relu_grad(gi, affine(src[i], mc[i * step], ma[i * step], ms[i * step]));
                    if constexpr (XTerm) {
                        dst[i] = mul_add(gi, al[i * step], affine(src[i], ce[i * step], kk[i * step], sf[i * step]));
                    } else {
                        dst[i] = affine(gi, T(0), al[i * step], T(0));  // as the eval pass without the ReLU
                    }
                }
            });
        });
    }
};

// The mean rounded to T: the passes' centre.
template <class T>
double centre_of(double mean) {
    return static_cast<double>(static_cast<T>(mean));
}

template <class T>
double gamma_of(const T* gamma, std::size_t c) {
    return gamma ? static_cast<double>(gamma[c]) : 1.0;
}

// Channel c of the forward: y = gamma·(x - mean)·invstd + beta.
template <class T>
void set_forward(AffinePass<T>& pass, std::size_t c, double mean, double invstd, const T* gamma, const T* beta) {
    const double centre = centre_of<T>(mean);
    const double alpha = gamma_of(gamma, c) * invstd;
    pass.centre.set(c, centre);
    pass.alpha.set(c, alpha);
    pass.shift.set(c, (beta ? static_cast<double>(beta[c]) : 0.0) - (mean - centre) * alpha);
}

// With a ReLU after the BN, the forward's pass rebuilt from the statistics it returned: what the
// backward recomputes the ReLU's mask with. Without, nothing.
template <bool Relu, class T>
std::optional<AffinePass<T>> relu_mask(const ChannelShape& sh, const BatchNormStats& stats, const T* gamma,
                                       const T* beta) {
    std::optional<AffinePass<T>> mask;
    if (!Relu) return mask;
    mask.emplace(sh);
    for (std::size_t c = 0; c < sh.c; ++c) set_forward(*mask, c, stats.mean[c], stats.invstd[c], gamma, beta);
    return mask;
}

// The backward sums' term: {g, g·(x - mean)}, g = dy, gated by the ReLU's mask if Relu.
template <bool Relu, class T>
auto backward_term(const T* dy, const T* x, const double* mean, const AffinePass<T>* mask) {
    return [dy, x, mean, mask](std::size_t c, std::size_t i) {
        T gi = dy[i];
        if constexpr (Relu) gi = relu_grad(gi, mask->at(c, x[i]));
        const double g = static_cast<double>(gi);
        return std::array<double, 2>{g, g * (static_cast<double>(x[i]) - mean[c])};
    };
}

// dgamma = Σ dy·(x - mean)·invstd and dbeta = Σ dy of channel c, where wanted.
template <class T>
void set_parameter_grads(std::size_t c, const std::array<double, 2>& sums, double invstd, T* dgamma, T* dbeta) {
    if (dgamma) dgamma[c] = static_cast<T>(sums[1] * invstd);
    if (dbeta) dbeta[c] = static_cast<T>(sums[0]);
}

template <bool Relu, class T>
BatchNormStats forward_train(const ChannelShape& shape, const T* x, const T* gamma, const T* beta, double eps, T* y,
                             std::optional<RunningStats<T>> running) {
    const double n = static_cast<double>(shape.per_channel());
    BatchNormStats st{std::vector<double>(shape.c), std::vector<double>(shape.c)};
    std::vector<std::array<double, 1>> sum(shape.c), sq(shape.c);
    AffinePass<T> pass(shape);
    const double* mean = st.mean.data();
    walk(shape, 2 * sizeof(T), [&](const Channels& ch) {
        reduce<1>(shape, ch, [x](std::size_t, std::size_t i) { return std::array<double, 1>{static_cast<double>(x[i])}; },
                  sum);
        for (std::size_t c = ch.begin; c < ch.end; ++c) st.mean[c] = sum[c][0] / n;
        // Two-pass variance: Σ(x - mean)² does not cancel as Σx² - n·mean² would.
        reduce<1>(shape, ch, [x, mean](std::size_t c, std::size_t i) {
            const double d = static_cast<double>(x[i]) - mean[c];
            return std::array<double, 1>{d * d};
        }, sq);
        for (std::size_t c = ch.begin; c < ch.end; ++c) {
            st.invstd[c] = 1.0 / std::sqrt(sq[c][0] / n + eps);
            if (running) {
                const double f = running->factor;
                running->mean[c] = static_cast<T>((1.0 - f) * static_cast<double>(running->mean[c]) + f * st.mean[c]);
                running->var[c] = static_cast<T>((1.0 - f) * static_cast<double>(running->var[c]) + f * sq[c][0] / (n - 1.0));
            }
            set_forward(pass, c, st.mean[c], st.invstd[c], gamma, beta);
        }
        pass.template run<Relu>(shape, ch, x, y);
    });
    return st;
}

template <bool Relu, class T>
BatchNormStats forward_eval(const ChannelShape& shape, const T* x, const T* gamma, const T* beta,
                            const T* running_mean, const T* running_var, double eps, T* y) {
    BatchNormStats st{std::vector<double>(running_mean, running_mean + shape.c), std::vector<double>(shape.c)};
    AffinePass<T> pass(shape);
    for (std::size_t c = 0; c < shape.c; ++c) {
        st.invstd[c] = 1.0 / std::sqrt(static_cast<double>(running_var[c]) + eps);
        set_forward(pass, c, st.mean[c], st.invstd[c], gamma, beta);
    }
    pass.template run<Relu>(shape, Channels{0, shape.c, true}, x, y);
    return st;
}

template <bool Relu, class T>
void backward_train(const ChannelShape& shape, const T* dy, const T* x, const T* gamma, const T* beta,
                    const BatchNormStats& stats, T* dx, T* dgamma, T* dbeta) {
    const double n = static_cast<double>(shape.per_channel());
    std::vector<std::array<double, 2>> sums(shape.c);
    const std::optional<AffinePass<T>> relu = relu_mask<Relu>(shape, stats, gamma, beta);
    const AffinePass<T>* mask = relu ? &*relu : nullptr;
    std::optional<InputGradPass<T>> pass;
    if (dx) pass.emplace(shape);
    walk(shape, 3 * sizeof(T), [&](const Channels& ch) {
        reduce<2>(shape, ch, backward_term<Relu>(dy, x, stats.mean.data(), mask), sums);
        for (std::size_t c = ch.begin; c < ch.end; ++c) {
            const double invstd = stats.invstd[c];
            set_parameter_grads(c, sums[c], invstd, dgamma, dbeta);
            if (!pass) continue;
            // dx = alpha·(g - Σg/n - x̂·Σ(g·x̂)/n) with x̂ = (x - mean)·invstd, regrouped
            // around the centre: g·alpha + (x - centre)·k + shift.
            const double alpha = gamma_of(gamma, c) * invstd;
            const double centre = centre_of<T>(stats.mean[c]);
            const double k = -alpha * invstd * invstd * sums[c][1] / n;
            pass->alpha.set(c, alpha);
            pass->centre.set(c, centre);
            pass->k.set(c, k);
            pass->shift.set(c, -alpha * sums[c][0] / n - k * (stats.mean[c] - centre));
        }
        if (pass) pass->template run<Relu>(shape, ch, dy, x, mask, dx);
    });
}

template <bool Relu, class T>
void backward_eval(const ChannelShape& shape, const T* dy, const T* x, const T* gamma, const T* beta,
                   const BatchNormStats& stats, T* dx, T* dgamma, T* dbeta) {
    const bool sums_wanted = dgamma || dbeta;
    std::vector<std::array<double, 2>> sums(sums_wanted ? shape.c : 0);
    const std::optional<AffinePass<T>> relu = relu_mask<Relu>(shape, stats, gamma, beta);
    const AffinePass<T>* mask = relu ? &*relu : nullptr;
    // dx = g·alpha: (dy - 0)·alpha + 0, without reading x; or, as the ReLU's mask reads x, the
    // training pass without its x term.
    std::optional<std::conditional_t<Relu, InputGradPass<T>, AffinePass<T>>> pass;
    if (dx) pass.emplace(shape);
    walk(shape, 3 * sizeof(T), [&](const Channels& ch) {
        if (sums_wanted) reduce<2>(shape, ch, backward_term<Relu>(dy, x, stats.mean.data(), mask), sums);
        for (std::size_t c = ch.begin; c < ch.end; ++c) {
            if (sums_wanted) set_parameter_grads(c, sums[c], stats.invstd[c], dgamma, dbeta);
            if (pass) pass->alpha.set(c, gamma_of(gamma, c) * stats.invstd[c]);
        }
        if (!pass) return;
        if constexpr (Relu) {
            pass->template run<true, false>(shape, ch, dy, x, mask, dx);
        } else {
            pass->run(shape, ch, dy, dx);
        }
    });
}

}  // namespace

template <class T>
BatchNormStats batch_norm_forward_train(const ChannelShape& shape, const T* x, const T* gamma, const T* beta,
                                        double eps, T* y, std::optional<RunningStats<T>> running) {
    return forward_train<false>(shape, x, gamma, beta, eps, y, running);
}

template <class T>
BatchNormStats batch_norm_forward_eval(const ChannelShape& shape, const T* x, const T* gamma, const T* beta,
                                       const T* running_mean, const T* running_var, double eps, T* y) {
    return forward_eval<false>(shape, x, gamma, beta, running_mean, running_var, eps, y);
}

template <class T>
void batch_norm_backward_train(const ChannelShape& shape, const T* dy, const T* x, const T* gamma,
                               const BatchNormStats& stats, T* dx, T* dgamma, T* dbeta) {
    backward_train<false, T>(shape, dy, x, gamma, nullptr, stats, dx, dgamma, dbeta);
}

template <class T>
void batch_norm_backward_eval(const ChannelShape& shape, const T* dy, const T* x, const T* gamma,
                              const BatchNormStats& stats, T* dx, T* dgamma, T* dbeta) {
    backward_eval<false, T>(shape, dy, x, gamma, nullptr, stats, dx, dgamma, dbeta);
}

template <class T>
BatchNormStats batch_norm_relu_forward_train(const ChannelShape& shape, const T* x, const T* gamma, const T* beta,
                                             double eps, T* y, std::optional<RunningStats<T>> running) {
    return forward_train<true>(shape, x, gamma, beta, eps, y, running);
}

template <class T>
BatchNormStats batch_norm_relu_forward_eval(const ChannelShape& shape, const T* x, const T* gamma, const T* beta,
                                            const T* running_mean, const T* running_var, double eps, T* y) {
    return forward_eval<true>(shape, x, gamma, beta, running_mean, running_var, eps, y);
}

template <class T>
void batch_norm_relu_backward_train(const ChannelShape& shape, const T* dy, const T* x, const T* gamma, const T* beta,
                                    const BatchNormStats& stats, T* dx, T* dgamma, T* dbeta) {
    backward_train<true>(shape, dy, x, gamma, beta, stats, dx, dgamma, dbeta);
}

template <class T>
void batch_norm_relu_backward_eval(const ChannelShape& shape, const T* dy, const T* x, const T* gamma, const T* beta,
                                   const BatchNormStats& stats, T* dx, T* dgamma, T* dbeta) {
    backward_eval<true>(shape, dy, x, gamma, beta, stats, dx, dgamma, dbeta);
}

#define XGRAD_BATCH_NORM_KERNELS(T)                                                                                  \
    template BatchNormStats batch_norm_forward_train(const ChannelShape&, const T*, const T*, const T*, double, T*,  \
                                                     std::optional<RunningStats<T>>);                                \
    template BatchNormStats batch_norm_forward_eval(const ChannelShape&, const T*, const T*, const T*, const T*,     \
                                                    const T*, double, T*);                                           \
    template void batch_norm_backward_train(const ChannelShape&, const T*, const T*, const T*, const BatchNormStats&, \
                                            T*, T*, T*);                                                             \
    template void batch_norm_backward_eval(const ChannelShape&, const T*, const T*, const T*, const BatchNormStats&,  \
                                           T*, T*, T*);                                                              \
    template BatchNormStats batch_norm_relu_forward_train(const ChannelShape&, const T*, const T*, const T*, double, \
                                                          T*, std::optional<RunningStats<T>>);                       \
    template BatchNormStats batch_norm_relu_forward_eval(const ChannelShape&, const T*, const T*, const T*,          \
                                                         const T*, const T*, double, T*);                            \
    template void batch_norm_relu_backward_train(const ChannelShape&, const T*, const T*, const T*, const T*,        \
                                                 const BatchNormStats&, T*, T*, T*);                                 \
    template void batch_norm_relu_backward_eval(const ChannelShape&, const T*, const T*, const T*, const T*,         \
                                                const BatchNormStats&, T*, T*, T*);
XGRAD_BATCH_NORM_KERNELS(float)
XGRAD_BATCH_NORM_KERNELS(double)
#undef XGRAD_BATCH_NORM_KERNELS

}  // namespace xgrad
