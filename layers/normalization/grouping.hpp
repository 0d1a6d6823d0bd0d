// Which elements of a tensor share statistics, and the two views of the tensor the normalization
// stages work on. A tensor is seen as (N, C, S) row-major (channel_reduce.hpp):
//  - per channel (BatchNorm and its kin): one group per channel c, over all n and s;
//  - per sample and group (GroupNorm; InstanceNorm is G = C; LayerNorm is G = 1, or C = 1 with
//    the normalized dims as S): one group per (n, g), over the C/G channels of g and all s.
// The statistics view is the tensor as channel_reduce sees it so that its "channels" are the
// groups: (N, C, S) per channel, (1, N·G, (C/G)·S) per sample. The row view is the same tensor cut
// into rows whose elements share one set of coefficients (the elementwise passes and the backward
// sums): (N, C, S) per channel, a row being a channel; (1, N·C, S) per sample, a row being (n, c),
// since gamma and beta are per channel within a group.
#pragma once

#include <cstddef>
#include <string>

#include "autodiff/shape.hpp"
#include "layers/normalization/channel_reduce.hpp"

namespace xgrad {

class Grouping {
public:
    static Grouping per_channel(const ChannelShape& shape) { return Grouping(shape, 0); }
    // A ShapeError naming both numbers unless 0 < groups and groups divides C.
    static Grouping per_sample(const ChannelShape& shape, std::size_t groups) {
        if (groups == 0 || shape.c % groups != 0) {
            throw ShapeError("normalization: " + std::to_string(groups) + " groups do not divide " +
                             std::to_string(shape.c) + " channels");
        }
        return Grouping(shape, groups);
    }

    // One group a row of a (rows, columns) matrix, over (rows, 1, columns): LayerNorm's samples,
    // GroupNorm's groups walked as rows (group_norm_kernel.hpp).
    static Grouping per_row(std::size_t rows, std::size_t columns) { return per_sample({rows, 1, columns}, 1); }

    const ChannelShape& shape() const { return shape_; }
    bool is_per_channel() const { return groups_per_sample_ == 0; }

    // Groups, and the elements each statistic is taken over.
    std::size_t groups() const { return is_per_channel() ? shape_.c : shape_.n * groups_per_sample_; }
    std::size_t group_size() const { return is_per_channel() ? shape_.per_channel() : channels_per_group() * shape_.s; }

    ChannelShape statistics_view() const {
        return is_per_channel() ? shape_ : ChannelShape{1, groups(), group_size()};
    }
    ChannelShape row_view() const { return is_per_channel() ? shape_ : ChannelShape{1, shape_.n * shape_.c, shape_.s}; }
    std::size_t rows() const { return row_view().c; }

    // Rows are (n, c) with n major, groups (n, g), so that a group's rows are consecutive.
    std::size_t rows_per_group() const { return is_per_channel() ? 1 : channels_per_group(); }
    std::size_t group_of_row(std::size_t row) const { return row / rows_per_group(); }
    std::size_t channel_of_row(std::size_t row) const { return row % shape_.c; }

private:
    Grouping(const ChannelShape& shape, std::size_t groups_per_sample)
        : shape_(shape), groups_per_sample_(groups_per_sample) {}
    std::size_t channels_per_group() const { return shape_.c / groups_per_sample_; }

    ChannelShape shape_;
    std::size_t groups_per_sample_;  // 0: per channel
};

}  // namespace xgrad
