// BN's per-channel arithmetic, shared by both layouts: from the statistics and the parameters, in
// double, the T coefficients that leave one multiply-add chain per element to the elementwise
// passes. They subtract the centre, the mean rounded to T, first: x - centre is exact for x near
// the mean, where folding the mean into the shift would add two large rounded terms.
#pragma once

#include <array>
#include <cmath>
#include <cstddef>
#include <vector>

#include "bench/variants/bn_variants.hpp"

namespace bn_variants::detail {

// y = (x - centre)·scale + shift.
template <class T>
struct Affine {
    std::vector<T> centre, scale, shift;
};

// dx = dy·alpha + ((x - centre)·k + shift).
template <class T>
struct InputGrad {
    std::vector<T> alpha, centre, k, shift;
};

template <class T>
double centre_of(double mean) {
    return static_cast<double>(static_cast<T>(mean));
}

// y = gamma·(x - mean)/sqrt(var + eps) + beta.
template <class T>
Affine<T> normalization(const Moments& m, const T* gamma, const T* beta, double eps) {
    const std::size_t channels = m.mean.size();
    Affine<T> a{std::vector<T>(channels), std::vector<T>(channels), std::vector<T>(channels)};
    for (std::size_t c = 0; c < channels; ++c) {
        const double centre = centre_of<T>(m.mean[c]);
        const double scale = static_cast<double>(gamma[c]) / std::sqrt(m.var[c] + eps);
        a.centre[c] = static_cast<T>(centre);
        a.scale[c] = static_cast<T>(scale);
        a.shift[c] = static_cast<T>(static_cast<double>(beta[c]) - (m.mean[c] - centre) * scale);
    }
    return a;
}

// The running statistics, as the Moments eval normalizes with.
template <class T>
Moments running_moments(std::size_t channels, const T* running_mean, const T* running_var) {
    return {std::vector<double>(running_mean, running_mean + channels),
            std::vector<double>(running_var, running_var + channels)};
}

// Training backward from the per-channel sums {Σdy, Σdy·(x - centre)} over n values each: writes
// dgamma and dbeta, returns dx's coefficients. With x̂ = (x - mean)·invstd and alpha = gamma·invstd,
// dx = alpha·(dy - Σdy/n - x̂·Σ(dy·x̂)/n), regrouped around the centre.
template <class T, class Acc>
InputGrad<T> input_gradient(const Moments& m, const T* gamma, double eps, const std::vector<std::array<Acc, 2>>& sums,
                            std::size_t n, T* dgamma, T* dbeta) {
    const std::size_t channels = m.mean.size();
    const double count = static_cast<double>(n);
    InputGrad<T> g{std::vector<T>(channels), std::vector<T>(channels), std::vector<T>(channels),
                   std::vector<T>(channels)};
    for (std::size_t c = 0; c < channels; ++c) {
        const double centre = centre_of<T>(m.mean[c]);
        const double sum_dy = static_cast<double>(sums[c][0]);
        // Σdy·(x - mean) = Σdy·(x - centre) - Σdy·(mean - centre)
        const double sum_dy_xc = static_cast<double>(sums[c][1]) - sum_dy * (m.mean[c] - centre);
        const double invstd = 1.0 / std::sqrt(m.var[c] + eps);
        const double alpha = static_cast<double>(gamma[c]) * invstd;
        const double k = -alpha * invstd * invstd * sum_dy_xc / count;
        dgamma[c] = static_cast<T>(sum_dy_xc * invstd);
        dbeta[c] = static_cast<T>(sum_dy);
        g.alpha[c] = static_cast<T>(alpha);
        g.centre[c] = static_cast<T>(centre);
        g.k[c] = static_cast<T>(k);
        g.shift[c] = static_cast<T>(-alpha * sum_dy / count - k * (m.mean[c] - centre));
    }
    return g;
}

}  // namespace bn_variants::detail
