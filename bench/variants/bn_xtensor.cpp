// The naive baseline: BN as a composition of xtensor reducers and expressions over xt::adapt views
// of the raw (N, C, S) data, the per-channel vectors broadcast as (1, C, 1). Serial; the reducers
// accumulate in T, as they do by default.
#include <array>
#include <cstddef>

#include <xtensor/xadapt.hpp>
#include <xtensor/xmath.hpp>
#include <xtensor/xtensor.hpp>
#include <xtensor/xview.hpp>

#include "bench/variants/bn_variants.hpp"

namespace bn_variants::xtensor {

namespace {

template <class T>
auto tensor(T* p, const ChannelShape& sh) {
    return xt::adapt(p, sh.size(), xt::no_ownership(), std::array<std::size_t, 3>{sh.n, sh.c, sh.s});
}

template <class T>
auto channels(T* p, const ChannelShape& sh) {
    return xt::adapt(p, sh.c, xt::no_ownership(), std::array<std::size_t, 1>{sh.c});
}

// A per-channel vector as (1, C, 1), to broadcast against (N, C, S).
template <class E>
auto per_channel(E&& e) {
    return xt::view(std::forward<E>(e), xt::newaxis(), xt::all(), xt::newaxis());
}

template <class T>
xt::xtensor<T, 1> from_doubles(const std::vector<double>& v) {
    xt::xtensor<T, 1> out = xt::empty<T>({v.size()});
    std::copy(v.begin(), v.end(), out.begin());
    return out;
}

}  // namespace

template <class T>
Moments forward_train(const ChannelShape& shape, const T* x, const T* gamma, const T* beta, double eps, T* y) {
    const auto xa = tensor(x, shape);
    const xt::xtensor<T, 1> mean = xt::mean(xa, {0, 2});
    const xt::xtensor<T, 1> var = xt::variance(xa, {0, 2});
    const xt::xtensor<T, 1> scale = channels(gamma, shape) / xt::sqrt(var + static_cast<T>(eps));
    auto ya = tensor(y, shape);
    ya = (xa - per_channel(mean)) * per_channel(scale) + per_channel(channels(beta, shape));
    return {std::vector<double>(mean.begin(), mean.end()), std::vector<double>(var.begin(), var.end())};
}

template <class T>
void backward_train(const ChannelShape& shape, const T* dy, const T* x, const T* gamma, const Moments& moments,
                    double eps, T* dx, T* dgamma, T* dbeta) {
    const T n = static_cast<T>(shape.per_channel());
    const auto xa = tensor(x, shape);
    const auto dya = tensor(dy, shape);
    const xt::xtensor<T, 1> mean = from_doubles<T>(moments.mean);
    const xt::xtensor<T, 1> invstd = 1 / xt::sqrt(from_doubles<T>(moments.var) + static_cast<T>(eps));
    const auto xhat = (xa - per_channel(mean)) * per_channel(invstd);
    const xt::xtensor<T, 1> sum_dy = xt::sum(dya, {0, 2});
    const xt::xtensor<T, 1> sum_dy_xhat = xt::sum(dya * xhat, {0, 2});
    const xt::xtensor<T, 1> scale = channels(gamma, shape) * invstd / n;
    auto dxa = tensor(dx, shape);
    dxa = per_channel(scale) * (n * dya - per_channel(sum_dy) - xhat * per_channel(sum_dy_xhat));
    channels(dgamma, shape) = sum_dy_xhat;
    channels(dbeta, shape) = sum_dy;
}

template <class T>
void forward_eval(const ChannelShape& shape, const T* x, const T* gamma, const T* beta, const T* running_mean,
                  const T* running_var, double eps, T* y) {
    const auto xa = tensor(x, shape);
    const xt::xtensor<T, 1> scale =
        channels(gamma, shape) / xt::sqrt(channels(running_var, shape) + static_cast<T>(eps));
    auto ya = tensor(y, shape);
    ya = (xa - per_channel(channels(running_mean, shape))) * per_channel(scale) + per_channel(channels(beta, shape));
}

#define BN_VARIANTS_XTENSOR(T)                                                                                      \
    template Moments forward_train<T>(const ChannelShape&, const T*, const T*, const T*, double, T*);               \
    template void backward_train<T>(const ChannelShape&, const T*, const T*, const T*, const Moments&, double, T*,  \
                                    T*, T*);                                                                        \
    template void forward_eval<T>(const ChannelShape&, const T*, const T*, const T*, const T*, const T*, double, T*);
BN_VARIANTS_XTENSOR(float)
BN_VARIANTS_XTENSOR(double)
#undef BN_VARIANTS_XTENSOR

}  // namespace bn_variants::xtensor
