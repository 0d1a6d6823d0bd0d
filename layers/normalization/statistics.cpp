#include "layers/normalization/statistics.hpp"

#include <algorithm>
#include <array>
#include <cmath>
#include <stdexcept>
#include <type_traits>
#include <vector>

namespace xgrad {

namespace {

// The cancellation factor Σ(x - k)² / Σ(x - mean)² = 1 + (mean - k)²/var above which a group's
// statistics are taken again in two passes, the mean and then the centred squares.
constexpr double kMaxCancellation = 8.0;

// Elements averaged into a group's shift: one draw of a group lies more than 2.6 standard
// deviations from the mean (cancellation past 8) for about 1% of the groups of normal data, the
// mean of four draws for almost none, which spares those groups the two-pass reread.
constexpr std::size_t kShiftElements = 4;

}  // namespace

template <class T>
void group_moments(const Grouping& grouping, const T* x, const Rows& groups, Moments& out) {
    const ChannelShape view = grouping.statistics_view();
    if (out.mean.size() != view.c || out.var.size() != view.c) {
        throw ShapeError("normalization statistics: expected " + std::to_string(view.c) + " means and variances, got " +
                         std::to_string(out.mean.size()) + " and " + std::to_string(out.var.size()));
    }
    const double n = static_cast<double>(view.per_channel());
    if (view.per_channel() == 0) {  // no element to shift by, nor to read: the statistics of nothing
        for (std::size_t g = groups.begin; g < groups.end; ++g) out.mean[g] = out.var[g] = std::nan("");
        return;
    }
    // The shift of group g, kept in out.mean[g] until its statistics replace it: the mean of the
    // group's first kShiftElements elements in (n, s) order, (n·C + g)·S + s in the statistics view.
    const std::size_t shift_count = std::min(kShiftElements, view.per_channel());
    // Each element scaled first, so that four values near the largest double do not overflow
    // their sum; by a product (exact where the count is a power of two), as a quotient per element
    // kept the loop scalar: a sixth of BatchNorm1d's forward at (64, 512).
    const double weight = 1.0 / static_cast<double>(shift_count);
    const auto term = [&](std::size_t i) { return static_cast<double>(x[i]) * weight; };
    // Across the groups where those are adjacent (S = 1), which vectorizes: one pass over them, the
    // count a constant where it is kShiftElements, so that each group's sum stays in a register
    // (a pass per element, adding into memory, was half of this function's own time in Ghost BN's
    // forward at (64, 512)). Group by group otherwise, each group's first elements being adjacent.
    if (view.s == 1) {
        const auto shift_over_rows = [&](auto count) {
            for (std::size_t g = groups.begin; g < groups.end; ++g) {
                double sum = 0.0;
                for (std::size_t j = 0; j < count; ++j) sum += term(j * view.c + g);
                out.mean[g] = sum;
            }
        };
        if (shift_count == kShiftElements) {
            shift_over_rows(std::integral_constant<std::size_t, kShiftElements>{});
        } else {
            shift_over_rows(shift_count);
        }
    }
    const double* const shift = out.mean.data();
    const auto shifted = [x, shift](std::size_t g, std::size_t i) {
        const double d = static_cast<double>(x[i]) - shift[g];
        return Products<2>{{d, d}, {1.0, d}};
    };
    // Group g's shift, at S > 1: its first elements are adjacent.
    const auto shift_of = [&](std::size_t g) {
        double sum = 0.0;
        for (std::size_t j = 0, sample = 0, s = 0; j < shift_count; ++j) {  // j = sample·S + s: no division
            sum += term((sample * view.c + g) * view.s + s);
            if (++s == view.s) {
                s = 0;
                ++sample;
            }
        }
        return sum;
    };
    const bool past = past_the_caches(view.size(), sizeof(T));
    const ChannelPartition part = channel_partition(view);
    std::vector<std::array<double, 2>> sums;
    if (view.s != 1 && view.n == 1 && part.layout == ChannelLayout::runs && part.blocks == 1 && !groups.whole &&
        !past) {
        // Groups of one run each (GroupNorm, LayerNorm, InstanceNorm) summed in one piece, a block
        // in the calling thread: each group's shift just before its sums, as block_into adds them
        // (the same bits), so that the shift's loads come with the walk over the block in memory
        // order. A pass over the groups' first elements ahead of the sums waited on each of those
        // loads, 8% of InstanceNorm2d's forward at (64, 64, 196) (bench/RESULTS.md).
        sums.assign(groups.end - groups.begin, std::array<double, 2>{});
        for (std::size_t g = groups.begin; g < groups.end; ++g) {
            out.mean[g] = shift_of(g);
            channel_detail::add_into(sums[g - groups.begin],
                                     channel_detail::one_run_block<2>(shifted, g, g * view.s, view.s));
        }
    } else {
        if (view.s != 1) {
            for (std::size_t g = groups.begin; g < groups.end; ++g) out.mean[g] = shift_of(g);
        }
        // Read ahead from memory only: from cache, reading ahead cost more than it saved (3% to 7%
        // at (64, 32, 784)), and a term that does not read ahead takes the faster walk row by row
        // (channel_reduce.hpp; both in bench/RESULTS.md).
        sums = past ? channel_sums_of<2>(view, groups, read_ahead(shifted, view.size(), x))
                    : channel_sums_of<2>(view, groups, shifted);
    }
    // A loop of its own without a branch, so that it vectorizes (scalar, its three divisions a
    // group took 8% of BatchNorm1d's forward at (64, 512)); products by 1/n rather than divisions
    // by n, which even in vectors cost 4% of BatchNorm1d's forward at (16, 512).
    std::vector<unsigned char> cancels(sums.size());
    unsigned char any_cancels = 0;
    const double inv_n = 1.0 / n;
    for (std::size_t i = 0; i < sums.size(); ++i) {
        const std::size_t g = groups.begin + i;
        const double sum = sums[i][0];
        const double squares = sums[i][1];
        const double mean_offset = sum * inv_n;
        const double centred = squares - sum * mean_offset;
        out.mean[g] = shift[g] + mean_offset;
        out.var[g] = std::max(0.0, centred * inv_n);
        cancels[i] = !(squares <= kMaxCancellation * centred);
        any_cancels |= cancels[i];
    }
    std::vector<std::size_t> cancelled;
    if (any_cancels) {
        for (std::size_t i = 0; i < sums.size(); ++i) {
            if (cancels[i]) cancelled.push_back(groups.begin + i);
        }
    }
    // Such a group's statistics again in two passes, Σx/n and then Σ(x - mean)²/n (k, far from its
    // mean, would also cost the mean's rounding): from the group's own data alone, so the same bits
    // whether `groups` is a block of the cache-blocked path or the whole tensor.
    for (std::size_t g : cancelled) {
        const Rows group = Rows::block(g, g + 1);
        channel_sums_over<1>(view, group, [x](std::size_t, std::size_t i) {
            return std::array<double, 1>{static_cast<double>(x[i])};
        }, [&](std::size_t h, const std::array<double, 1>& s) { out.mean[h] = s[0] / n; });
        const double mean = out.mean[g];
        channel_sums_over<1>(view, group, [x, mean](std::size_t, std::size_t i) {
            const double d = static_cast<double>(x[i]) - mean;
            return Products<1>{{d}, {d}};
        }, [&](std::size_t h, const std::array<double, 1>& s) { out.var[h] = s[0] / n; });
    }
}

template <class T>
void group_squares(const Grouping& grouping, const T* x, const Rows& groups, std::span<double> out) {
    const ChannelShape view = grouping.statistics_view();
    if (out.size() != view.c) {
        throw ShapeError("normalization statistics: expected " + std::to_string(view.c) + " outputs, got " +
                         std::to_string(out.size()));
    }
    channel_sums_over<1>(view, groups, [x](std::size_t, std::size_t i) {
        const double v = static_cast<double>(x[i]);
        return Products<1>{{v}, {v}};
    }, [out](std::size_t g, const std::array<double, 1>& s) { out[g] = s[0]; });
}

template <class T>
Moments batch_moments(const Grouping& grouping, const T* x) {
    const std::size_t groups = grouping.groups();
    if (groups > 0 && grouping.group_size() == 0) {
        throw std::invalid_argument("normalization statistics: the groups of a tensor of shape (N, C, S) = " +
                                    shape_str(std::array{grouping.shape().n, grouping.shape().c, grouping.shape().s}) +
                                    " have no elements");
    }
    Moments m{std::vector<double>(groups), std::vector<double>(groups)};
    group_moments(grouping, x, Rows::all(groups), m);
    return m;
}

#define XGRAD_NORMALIZATION_STATISTICS(T)                                                                        \
    template void group_moments(const Grouping&, const T*, const Rows&, Moments&);                               \
    template void group_squares(const Grouping&, const T*, const Rows&, std::span<double>);                      \
    template Moments batch_moments(const Grouping&, const T*);
XGRAD_NORMALIZATION_STATISTICS(float)
XGRAD_NORMALIZATION_STATISTICS(double)
#undef XGRAD_NORMALIZATION_STATISTICS

}  // namespace xgrad
