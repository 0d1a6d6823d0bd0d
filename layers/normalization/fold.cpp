#include "layers/normalization/fold.hpp"

#include <algorithm>
#include <array>
#include <cmath>
#include <tuple>
#include <type_traits>

namespace xgrad {

namespace {

// Calls f(std::bool_constant<flag>...), one constant per flag: a loop over channels whose
// branches on null parameters and on the coefficients' layout are known at compile time vectorizes
// (GCC takes one such branch out of a loop, not three: the folds were scalar, a fifth of Ghost BN's
// forward at (64, 512)).
template <class F, class... Known>
void with_known(const F& f, std::tuple<Known...> known) {
    std::apply(f, known);
}
template <class F, class... Known, class... Flags>
void with_known(const F& f, std::tuple<Known...> known, bool flag, Flags... flags) {
    if (flag) {
        with_known(f, std::tuple_cat(known, std::tuple<std::true_type>{}), flags...);
    } else {
        with_known(f, std::tuple_cat(known, std::tuple<std::false_type>{}), flags...);
    }
}
template <class F, class... Flags>
void with_known(const F& f, Flags... flags) {
    with_known(f, std::tuple<>{}, static_cast<bool>(flags)...);
}

// values[i], or `otherwise` where the flag says there are no values.
template <bool Present, class T>
double value_or(std::bool_constant<Present>, const T* values, std::size_t i, double otherwise) {
    if constexpr (Present) {
        return static_cast<double>(values[i]);
    } else {
        return otherwise;
    }
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
    // many rows (GroupNorm at S = 1, a row per element) and per channel.
    T* const centre_rows = out.centre.one_per_row();
    T* const scale_rows = out.scale.one_per_row();
    T* const shift_rows = out.shift.one_per_row();
    const double* const r_values = renorm ? renorm->r.data() : nullptr;
    const double* const d_values = renorm ? renorm->d.data() : nullptr;
    const auto fold = [&](auto plain, auto has_gamma, auto has_beta, auto has_renorm) {
        // {centre, scale, shift} of channel c in a group of `mean` and `invstd`.
        const auto coefficients = [&](double mean, double invstd, std::size_t c) {
            const double centre = centre_of<T>(mean);
            const double gamma_c = value_or(has_gamma, gamma, c, 1.0);
            const double scale = gamma_c * invstd * value_or(has_renorm, r_values, c, 1.0);
            const double d_term = has_renorm ? gamma_c * d_values[c] : 0.0;
            const double beta_c = value_or(has_beta, beta, c, 0.0) + d_term;
            return std::array<double, 3>{centre, scale, beta_c - (mean - centre) * scale};
        };
        for_each_group(grouping, rows, [&](std::size_t g, std::size_t first, std::size_t first_channel, auto per_group) {
            for (std::size_t i = 0; i < per_group; ++i) {
                const auto [centre, scale, shift] = coefficients(norm.mean[g], norm.invstd[g], first_channel + i);
                if constexpr (plain) {
                    centre_rows[first + i] = static_cast<T>(centre);
                    scale_rows[first + i] = static_cast<T>(scale);
                    shift_rows[first + i] = static_cast<T>(shift);
                } else {
                    out.centre.set(first + i, centre);
                    out.scale.set(first + i, scale);
                    out.shift.set(first + i, shift);
                }
            }
        });
    };
    with_known(fold, centre_rows != nullptr, gamma != nullptr, beta != nullptr, renorm != nullptr);
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
    const double* const r_values = renorm ? renorm->r.data() : nullptr;
    const double* const d_values = renorm ? renorm->d.data() : nullptr;
    const auto fold = [&](auto plain, auto has_gamma, auto has_renorm, auto has_sums) {
        // gamma·r of channel c: the weight of its sums in its group's, and with invstd its alpha.
        const auto weight = [&](std::size_t c) {
            return value_or(has_gamma, gamma, c, 1.0) * value_or(has_renorm, r_values, c, 1.0);
        };
        // Row `row`'s share of dgamma, from its sums (its share of dbeta is its Σg).
        const auto dgamma_share = [&](std::size_t row, std::size_t c, double invstd) {
            const auto& s = row_sums[row];
            return has_renorm ? s[1] * invstd * r_values[c] + s[0] * d_values[c] : s[1] * invstd;
        };
        // dx's {centre, k, shift} in group g, whose rows' sums weighted by their channels' gamma·r
        // are Σ w·Σg and Σ w·Σg·(x - mean): the sums of the gradient of x̂ (before r and d),
        // through which the statistics' gradients flow. A row's alpha is its weight·invstd.
        const auto group_terms = [&](std::size_t g, double weighted_sum, double weighted_dot) {
            const double invstd = norm.invstd[g];
            const double mean = norm.mean[g];
            const double centre = centre_of<T>(mean);
            const double k = through.variance ? -invstd * invstd * invstd * weighted_dot / n : 0.0;
            const double shift = (through.mean ? -invstd * weighted_sum / n : 0.0) - k * (mean - centre);
            return std::array<double, 3>{centre, k, shift};
        };
        const auto store = [&](std::size_t row, double alpha, const std::array<double, 3>& terms) {
            if constexpr (plain) {  // plain stores, as in fold_forward
                alpha_rows[row] = static_cast<T>(alpha);
                centre_rows[row] = static_cast<T>(terms[0]);
                k_rows[row] = static_cast<T>(terms[1]);
                shift_rows[row] = static_cast<T>(terms[2]);
            } else {
                dx->alpha.set(row, alpha);
                dx->centre.set(row, terms[0]);
                dx->k.set(row, terms[1]);
                dx->shift.set(row, terms[2]);
            }
        };
        // Each output in a loop of its own, the branches on what is wanted outside the loops, so
        // that per channel (a row its own group) they vectorize.
        if (has_sums && !row_dgamma.empty()) {
            for_each_group(grouping, rows, [&](std::size_t g, std::size_t first, std::size_t first_channel, auto per_group) {
                for (std::size_t i = 0; i < per_group; ++i) {
                    row_dgamma[first + i] = dgamma_share(first + i, first_channel + i, norm.invstd[g]);
                }
            });
        }
        if (has_sums && !row_dbeta.empty()) {
            for (std::size_t row = rows.begin; row < rows.end; ++row) row_dbeta[row] = row_sums[row][0];
        }
        if (!dx) return;
        for_each_group(grouping, rows, [&](std::size_t g, std::size_t first, std::size_t first_channel, auto per_group) {
            double weighted_sum = 0.0;
            double weighted_dot = 0.0;
            if constexpr (has_sums) {
                for (std::size_t i = 0; i < per_group; ++i) {
                    const double w = weight(first_channel + i);
                    weighted_sum += w * row_sums[first + i][0];
                    weighted_dot += w * row_sums[first + i][1];
                }
            }
            const std::array<double, 3> terms = group_terms(g, weighted_sum, weighted_dot);
            for (std::size_t i = 0; i < per_group; ++i) store(first + i, weight(first_channel + i) * norm.invstd[g], terms);
        });
    };
    with_known(fold, alpha_rows != nullptr, gamma != nullptr, renorm != nullptr, !row_sums.empty());
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
