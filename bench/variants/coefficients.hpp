// BN's per-channel arithmetic, shared by both layouts and taken from the library's stage 2
// (layers/normalization/fold.hpp): the statistics and the parameters folded, in double, into the T
// coefficients (xgrad::Affine, xgrad::InputGrad) that leave one multiply-add chain per element to
// the variants' own elementwise passes. What a variant varies is how it gets the statistics and
// the sums, and how it walks the tensor; never the formula.
#pragma once

#include <array>
#include <cstddef>
#include <span>
#include <vector>

#include "bench/variants/bn_variants.hpp"
#include "layers/normalization/coefficients.hpp"
#include "layers/normalization/fold.hpp"

namespace bn_variants::detail {

using xgrad::Affine;
using xgrad::InputGrad;

// The channels of a (N, C, S) tensor seen as (1, C, N·S): BN's groups and group sizes, whose
// coefficients are stored once per channel whatever S, as the variants' loops read them: .at(c)
// for one channel, .from(0) for the C channels side by side.
inline ChannelShape channel_view(const ChannelShape& sh) { return {1, sh.c, sh.per_channel()}; }

// The mean rounded to T: the centre the elementwise passes and the backward sums subtract first.
template <class T>
double centre_of(double mean) {
    return static_cast<double>(static_cast<T>(mean));
}

// y = gamma·(x - mean)·invstd + beta.
template <class T>
Affine<T> normalization(const ChannelShape& sh, const xgrad::Normalization& norm, const T* gamma, const T* beta) {
    const ChannelShape view = channel_view(sh);
    Affine<T> a(view);
    xgrad::fold_forward(xgrad::Grouping::per_channel(view), norm, gamma, beta, nullptr, xgrad::Rows::all(sh.c), a);
    return a;
}

// The batch's moments as what a forward normalizes with: the mean and 1/sqrt(var + eps).
inline xgrad::Normalization batch_normalization(const Moments& m, double eps) {
    xgrad::Normalization norm{m.mean, std::vector<double>(m.var.size())};
    for (std::size_t c = 0; c < m.var.size(); ++c) norm.invstd[c] = xgrad::inverse_std(m.var[c], eps);
    return norm;
}

// Training backward from the per-channel sums {Σdy, Σdy·(x - centre)}: writes dgamma and dbeta,
// returns dx's coefficients (fold_backward, through the batch statistics).
template <class T, class Acc>
InputGrad<T> input_gradient(const ChannelShape& sh, const Moments& m, const T* gamma, double eps,
                            const std::vector<std::array<Acc, 2>>& sums, T* dgamma, T* dbeta) {
    const ChannelShape view = channel_view(sh);
    // fold_backward takes Σdy·(x - mean) = Σdy·(x - centre) - Σdy·(mean - centre).
    std::vector<std::array<double, 2>> about_mean(sh.c);
    for (std::size_t c = 0; c < sh.c; ++c) {
        const double sum_dy = static_cast<double>(sums[c][0]);
        about_mean[c] = {sum_dy, static_cast<double>(sums[c][1]) - sum_dy * (m.mean[c] - centre_of<T>(m.mean[c]))};
    }
    std::vector<double> dgamma_sums(sh.c), dbeta_sums(sh.c);
    InputGrad<T> g(view);
    xgrad::fold_backward<T, 2>(xgrad::Grouping::per_channel(view), batch_normalization(m, eps), gamma, nullptr,
                               xgrad::GradientThrough::batch(), std::span<const std::array<double, 2>>(about_mean),
                               xgrad::Rows::all(sh.c), &g, dgamma_sums, dbeta_sums);
    for (std::size_t c = 0; c < sh.c; ++c) {
        dgamma[c] = static_cast<T>(dgamma_sums[c]);
        dbeta[c] = static_cast<T>(dbeta_sums[c]);
    }
    return g;
}

}  // namespace bn_variants::detail
