#include "layers/normalization/statistics.hpp"

#include <array>
#include <stdexcept>

namespace xgrad {

namespace {

// out[g] = Σ term over group g, for the groups of `groups`.
template <class Term>
void sum_groups(const Grouping& grouping, const Rows& groups, const Term& term, std::span<double> out) {
    const ChannelShape view = grouping.statistics_view();
    if (out.size() != view.c) {
        throw ShapeError("normalization statistics: expected " + std::to_string(view.c) + " outputs, got " +
                         std::to_string(out.size()));
    }
    channel_sums_over<1>(view, groups, term, [out](std::size_t g, const std::array<double, 1>& s) { out[g] = s[0]; });
}

}  // namespace

template <class T>
void group_sums(const Grouping& grouping, const T* x, const Rows& groups, std::span<double> sum) {
    sum_groups(grouping, groups, [x](std::size_t, std::size_t i) { return std::array<double, 1>{static_cast<double>(x[i])}; },
               sum);
}

template <class T>
void group_centered_squares(const Grouping& grouping, const T* x, std::span<const double> mean, const Rows& groups,
                            std::span<double> out) {
    if (mean.size() != grouping.groups()) {
        throw ShapeError("normalization statistics: expected " + std::to_string(grouping.groups()) + " means, got " +
                         std::to_string(mean.size()));
    }
    const double* m = mean.data();
    sum_groups(grouping, groups, [x, m](std::size_t g, std::size_t i) {
        const double d = static_cast<double>(x[i]) - m[g];
        return std::array<double, 1>{d * d};
    }, out);
}

template <class T>
void group_squares(const Grouping& grouping, const T* x, const Rows& groups, std::span<double> out) {
    sum_groups(grouping, groups, [x](std::size_t, std::size_t i) {
        const double v = static_cast<double>(x[i]);
        return std::array<double, 1>{v * v};
    }, out);
}

template <class T>
Moments batch_moments(const Grouping& grouping, const T* x) {
    const std::size_t groups = grouping.groups();
    if (groups > 0 && grouping.group_size() == 0) {
        throw std::invalid_argument("normalization statistics: the groups of a tensor of shape (N, C, S) = " +
                                    shape_str(std::array{grouping.shape().n, grouping.shape().c, grouping.shape().s}) +
                                    " have no elements");
    }
    const double n = static_cast<double>(grouping.group_size());
    Moments m{std::vector<double>(groups), std::vector<double>(groups)};
    group_sums(grouping, x, Rows::all(groups), std::span<double>(m.mean));
    for (double& v : m.mean) v /= n;
    group_centered_squares(grouping, x, std::span<const double>(m.mean), Rows::all(groups), std::span<double>(m.var));
    for (double& v : m.var) v /= n;
    return m;
}

#define XGRAD_NORMALIZATION_STATISTICS(T)                                                                        \
    template void group_sums(const Grouping&, const T*, const Rows&, std::span<double>);                         \
    template void group_centered_squares(const Grouping&, const T*, std::span<const double>, const Rows&,        \
                                         std::span<double>);                                                     \
    template void group_squares(const Grouping&, const T*, const Rows&, std::span<double>);                      \
    template Moments batch_moments(const Grouping&, const T*);
XGRAD_NORMALIZATION_STATISTICS(float)
XGRAD_NORMALIZATION_STATISTICS(double)
#undef XGRAD_NORMALIZATION_STATISTICS

}  // namespace xgrad
