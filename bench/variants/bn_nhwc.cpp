// The NHWC variants, element (n, c, s) at (n·S + s)·C + c: a row (n, s) holds its C channels side
// by side, so the per-channel sums are vectors of accumulators, one per channel, that every row is
// added to, and the elementwise passes read their coefficients as vectors along the row.
// Two-pass statistics, plain loops; the schedules of schedule.hpp.
#include <array>
#include <cstddef>
#include <vector>

#include "bench/variants/bn_variants.hpp"
#include "bench/variants/coefficients.hpp"
#include "bench/variants/schedule.hpp"

namespace bn_variants::nhwc {

namespace {

using namespace detail;

// Per channel, the K sums of term(c, i) -> std::array<Acc, K> over its values, i being the flat index.
template <class Acc, std::size_t K, class Term>
std::vector<std::array<Acc, K>> channel_sums(const ChannelShape& sh, const Parallel& par, const Term& term) {
    const auto add = [&](std::array<Acc, K>* states, std::size_t n0, std::size_t n1, std::size_t c0, std::size_t c1) {
        const std::size_t width = c1 - c0;
        std::vector<Acc> acc(K * width);  // quantity k of channel c0 + j at k·width + j
        for (std::size_t row = n0 * sh.s; row < n1 * sh.s; ++row) {
            const std::size_t base = row * sh.c + c0;
            for (std::size_t j = 0; j < width; ++j) {
                const std::array<Acc, K> t = term(c0 + j, base + j);
                for (std::size_t k = 0; k < K; ++k) acc[k * width + j] += t[k];
            }
        }
        for (std::size_t j = 0; j < width; ++j) {
            for (std::size_t k = 0; k < K; ++k) states[j][k] += acc[k * width + j];
        }
    };
    return reduce<std::array<Acc, K>>(sh, par, add, AddSums{});
}

// out[i] = f(c, i) over the tensor.
template <class T, class F>
void elementwise(const ChannelShape& sh, const Parallel& par, T* out, const F& f) {
    for_pieces(sh, par, [&](std::size_t n0, std::size_t n1, std::size_t c0, std::size_t c1) {
        for (std::size_t row = n0 * sh.s; row < n1 * sh.s; ++row) {
            const std::size_t base = row * sh.c;
            for (std::size_t c = c0; c < c1; ++c) out[base + c] = f(c, base + c);
        }
    });
}

template <class Acc, class T>
Moments two_pass(const ChannelShape& sh, const T* x, const Parallel& par) {
    const Acc n = static_cast<Acc>(sh.per_channel());
    const auto sum = channel_sums<Acc, 1>(sh, par, [x](std::size_t, std::size_t i) {
        return std::array{static_cast<Acc>(x[i])};
    });
    std::vector<Acc> mean(sh.c);
    for (std::size_t c = 0; c < sh.c; ++c) mean[c] = sum[c][0] / n;
    const auto sq = channel_sums<Acc, 1>(sh, par, [x, m = mean.data()](std::size_t c, std::size_t i) {
        const Acc d = static_cast<Acc>(x[i]) - m[c];
        return std::array{d * d};
    });
    Moments out;
    for (std::size_t c = 0; c < sh.c; ++c) {
        out.mean.push_back(static_cast<double>(mean[c]));
        out.var.push_back(static_cast<double>(sq[c][0] / n));
    }
    return out;
}

template <class T>
void affine_pass(const ChannelShape& sh, const Parallel& par, const Affine<T>& a, const T* in, T* out) {
    const T* ce = a.centre.from(0);
    const T* sc = a.scale.from(0);
    const T* sf = a.shift.from(0);
    elementwise(sh, par, out, [=](std::size_t c, std::size_t i) { return (in[i] - ce[c]) * sc[c] + sf[c]; });
}

}  // namespace

template <class T, class Acc>
Moments forward_train(const ChannelShape& shape, const T* x, const T* gamma, const T* beta, double eps, T* y,
                      const Parallel& parallel) {
    Moments m = two_pass<Acc>(shape, x, parallel);
    affine_pass(shape, parallel, normalization(shape, batch_normalization(m, eps), gamma, beta), x, y);
    return m;
}

template <class T, class Acc>
void backward_train(const ChannelShape& shape, const T* dy, const T* x, const T* gamma, const Moments& moments,
                    double eps, T* dx, T* dgamma, T* dbeta, const Parallel& parallel) {
    std::vector<Acc> centre(shape.c);
    for (std::size_t c = 0; c < shape.c; ++c) centre[c] = static_cast<Acc>(centre_of<T>(moments.mean[c]));
    const auto sums = channel_sums<Acc, 2>(shape, parallel, [dy, x, ce = centre.data()](std::size_t c, std::size_t i) {
        const Acc g = static_cast<Acc>(dy[i]);
        return std::array{g, g * (static_cast<Acc>(x[i]) - ce[c])};
    });
    const InputGrad<T> g = input_gradient(shape, moments, gamma, eps, sums, dgamma, dbeta);
    const T* al = g.alpha.from(0);
    const T* ce = g.centre.from(0);
    const T* k = g.k.from(0);
    const T* sf = g.shift.from(0);
    elementwise(shape, parallel, dx,
                [=](std::size_t c, std::size_t i) { return dy[i] * al[c] + ((x[i] - ce[c]) * k[c] + sf[c]); });
}

template <class T>
void forward_eval(const ChannelShape& shape, const T* x, const T* gamma, const T* beta, const T* running_mean,
                  const T* running_var, double eps, T* y, const Parallel& parallel) {
    const auto running = xgrad::running_normalization(running_mean, running_var, shape.c, eps);
    affine_pass(shape, parallel, normalization(shape, running, gamma, beta), x, y);
}

#define BN_VARIANTS_NHWC_TRAIN(T, Acc)                                                                              \
    template Moments forward_train<T, Acc>(const ChannelShape&, const T*, const T*, const T*, double, T*,          \
                                           const Parallel&);                                                       \
    template void backward_train<T, Acc>(const ChannelShape&, const T*, const T*, const T*, const Moments&, double, \
                                         T*, T*, T*, const Parallel&);
BN_VARIANTS_NHWC_TRAIN(float, float)
BN_VARIANTS_NHWC_TRAIN(float, double)
BN_VARIANTS_NHWC_TRAIN(double, double)
#undef BN_VARIANTS_NHWC_TRAIN

template void forward_eval<float>(const ChannelShape&, const float*, const float*, const float*, const float*,
                                  const float*, double, float*, const Parallel&);
template void forward_eval<double>(const ChannelShape&, const double*, const double*, const double*, const double*,
                                   const double*, double, double*, const Parallel&);

}  // namespace bn_variants::nhwc
