#include "layers/normalization/fold.hpp"

#include <algorithm>
#include <array>
#include <cmath>
#include <type_traits>

namespace xgrad {

namespace {

template <class T>
double value_or(const T* values, std::size_t i, double otherwise) {
    return values ? static_cast<double>(values[i]) : otherwise;
}

// The mean rounded to T: the passes' centre.
template <class T>
double centre_of(double mean) {
    return static_cast<double>(static_cast<T>(mean));
}

// Calls f(group, first row, channel of the first row, rows per group) for the groups whose rows
// `rows` covers. Per channel, a row is its own group and channel, and the count of rows the
// constant 1, so that the fold compiles to one straight loop over the channels (a loop of run-time
// length per group doubled the fold's time, a tenth of BN's backward at S = 1); otherwise groups
// and channels are counted along rather than divided out row by row.
template <class F>
void for_each_group(const Grouping& grouping, const Rows& rows, const F& f) {
    if (grouping.is_per_channel()) {
        constexpr std::integral_constant<std::size_t, 1> one_row;
        for (std::size_t row = rows.begin; row < rows.end; ++row) f(row, row, row, one_row);
        return;
    }
    if (rows.begin >= rows.end) return;  // nothing to count from (and C may be 0)
    const std::size_t per_group = grouping.rows_per_group();
    const std::size_t channels = grouping.shape().c;
    std::size_t g = grouping.group_of_row(rows.begin);
    std::size_t c = grouping.channel_of_row(rows.begin);
    for (std::size_t first = rows.begin; first < rows.end; first += per_group, ++g) {
        f(g, first, c, per_group);
        c += per_group;  // a group's channels never straddle two samples: per_group divides C
        if (c == channels) c = 0;
    }
}

}  // namespace

template <class T>
Normalization running_normalization(const T* running_mean, const T* running_var, std::size_t channels, double eps) {
    Normalization out{std::vector<double>(running_mean, running_mean + channels), std::vector<double>(channels)};
    for (std::size_t c = 0; c < channels; ++c) out.invstd[c] = inverse_std(static_cast<double>(running_var[c]), eps);
    return out;
}

template <class T>
void renorm_correction(const Normalization& batch, const T* running_mean, const T* running_var, double eps,
                       const RenormLimits& limits, const Rows& channels, RenormCorrection& out) {
    const double rmax = limits.rmax;
    const double dmax = limits.dmax;
    for (std::size_t c = channels.begin; c < channels.end; ++c) {
        const double sigma = std::sqrt(static_cast<double>(running_var[c]) + eps);
        const double sigma_batch = 1.0 / batch.invstd[c];
        out.r[c] = std::clamp(sigma_batch / sigma, 1.0 / rmax, rmax);
        out.d[c] = std::clamp((batch.mean[c] - static_cast<double>(running_mean[c])) / sigma, -dmax, dmax);
    }
}

template <class T>
void fold_forward(const Grouping& grouping, const Normalization& norm, const T* gamma, const T* beta,
                  const RenormCorrection* renorm, const Rows& rows, Affine<T>& out) {
    // Plain stores where each row has one value: the rows' loop then vectorizes where groups have
    // many rows (GroupNorm at S = 1, a row per element).
    T* const centre_rows = out.centre.one_per_row();
    T* const scale_rows = out.scale.one_per_row();
    T* const shift_rows = out.shift.one_per_row();
    for_each_group(grouping, rows, [&](std::size_t g, std::size_t first, std::size_t first_channel, auto per_group) {
        const double mean = norm.mean[g];
        const double centre = centre_of<T>(mean);
        const double invstd = norm.invstd[g];
        // {scale, shift} of channel c.
        const auto coefficients = [&](std::size_t c) {
            const double gamma_c = value_or(gamma, c, 1.0);
            const double scale = gamma_c * invstd * (renorm ? renorm->r[c] : 1.0);
            const double beta_c = value_or(beta, c, 0.0) + (renorm ? gamma_c * renorm->d[c] : 0.0);
            return std::array<double, 2>{scale, beta_c - (mean - centre) * scale};
        };
        if (centre_rows) {
            for (std::size_t i = 0; i < per_group; ++i) {
                const auto [scale, shift] = coefficients(first_channel + i);
                centre_rows[first + i] = static_cast<T>(centre);
                scale_rows[first + i] = static_cast<T>(scale);
                shift_rows[first + i] = static_cast<T>(shift);
            }
            return;
        }
        for (std::size_t i = 0; i < per_group; ++i) {
            const auto [scale, shift] = coefficients(first_channel + i);
            out.centre.set(first + i, centre);
            out.scale.set(first + i, scale);
            out.shift.set(first + i, shift);
        }
    });
}

template <class T, std::size_t K>
void fold_backward(const Grouping& grouping, const Normalization& norm, const T* gamma, const RenormCorrection* renorm,
                   GradientThrough through, std::span<const std::array<double, K>> row_sums, const Rows& rows,
                   InputGrad<T>* dx, std::span<double> row_dgamma, std::span<double> row_dbeta) {
    const double n = static_cast<double>(grouping.group_size());
    T* const alpha_rows = dx ? dx->alpha.one_per_row() : nullptr;
    T* const centre_rows = dx ? dx->centre.one_per_row() : nullptr;
    T* const k_rows = dx ? dx->k.one_per_row() : nullptr;
    T* const shift_rows = dx ? dx->shift.one_per_row() : nullptr;
    for_each_group(grouping, rows, [&](std::size_t g, std::size_t first, std::size_t first_channel, auto per_group) {
        const double invstd = norm.invstd[g];
        // Σ over the group's rows of w·Σg and w·Σg·(x - mean), w = gamma·r: the sums of the
        // gradient of x̂ (before r and d), through which the statistics' gradients flow.
        double weighted_sum = 0.0;
        double weighted_dot = 0.0;
        for (std::size_t i = 0; i < per_group; ++i) {
            const std::size_t row = first + i;
            const std::size_t c = first_channel + i;
            const double r = renorm ? renorm->r[c] : 1.0;
            const double d = renorm ? renorm->d[c] : 0.0;
            if (row_sums.empty()) continue;
            const auto& s = row_sums[row];
            const double w = value_or(gamma, c, 1.0) * r;
            weighted_sum += w * s[0];
            weighted_dot += w * s[1];
            if (!row_dgamma.empty()) row_dgamma[row] = renorm ? s[1] * invstd * r + s[0] * d : s[1] * invstd;
            if (!row_dbeta.empty()) row_dbeta[row] = s[0];
        }
        if (!dx) return;
        const double mean = norm.mean[g];
        const double centre = centre_of<T>(mean);
        const double k = through.variance ? -invstd * invstd * invstd * weighted_dot / n : 0.0;
        const double shift = (through.mean ? -invstd * weighted_sum / n : 0.0) - k * (mean - centre);
        const auto alpha = [&](std::size_t c) { return value_or(gamma, c, 1.0) * (renorm ? renorm->r[c] : 1.0) * invstd; };
        if (alpha_rows) {  // plain stores, as in fold_forward
            for (std::size_t i = 0; i < per_group; ++i) {
                alpha_rows[first + i] = static_cast<T>(alpha(first_channel + i));
                centre_rows[first + i] = static_cast<T>(centre);
                k_rows[first + i] = static_cast<T>(k);
                shift_rows[first + i] = static_cast<T>(shift);
            }
            return;
        }
        for (std::size_t i = 0; i < per_group; ++i) {
            dx->alpha.set(first + i, alpha(first_channel + i));
            dx->centre.set(first + i, centre);
            dx->k.set(first + i, k);
            dx->shift.set(first + i, shift);
        }
    });
}

#define XGRAD_NORMALIZATION_FOLD_BACKWARD(T, K)                                                                  \
    template void fold_backward(const Grouping&, const Normalization&, const T*, const RenormCorrection*,         \
                                GradientThrough, std::span<const std::array<double, K>>, const Rows&, InputGrad<T>*, \
                                std::span<double>, std::span<double>);
#define XGRAD_NORMALIZATION_FOLD(T)                                                                                \
    template Normalization running_normalization(const T*, const T*, std::size_t, double);                        \
    template void renorm_correction(const Normalization&, const T*, const T*, double, const RenormLimits&,         \
                                    const Rows&, RenormCorrection&);                                               \
    template void fold_forward(const Grouping&, const Normalization&, const T*, const T*, const RenormCorrection*, \
                               const Rows&, Affine<T>&);                                                           \
    XGRAD_NORMALIZATION_FOLD_BACKWARD(T, 2)                                                                        \
    XGRAD_NORMALIZATION_FOLD_BACKWARD(T, 3)
XGRAD_NORMALIZATION_FOLD(float)
XGRAD_NORMALIZATION_FOLD(double)
#undef XGRAD_NORMALIZATION_FOLD
#undef XGRAD_NORMALIZATION_FOLD_BACKWARD

}  // namespace xgrad
