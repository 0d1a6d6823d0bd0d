// Running statistics that a training forward moves in place, as torch's BatchNorm and
// InstanceNorm do: running = (1 - factor)·running + factor·batch, with the unbiased batch variance
// (n/(n-1), n the group's size). factor is the momentum, or 1 / num_batches_tracked for a
// cumulative average.
#pragma once

#include "layers/normalization/grouping.hpp"
#include "layers/normalization/statistics.hpp"

namespace xgrad {

template <class T>
struct RunningStats {
    T* mean;  // one value per channel
    T* var;
    double factor;
};

// Moves `running` by the batch moments of the groups of `groups`: per channel for a per-channel
// grouping; for instance normalization (per sample, one channel per group) by the mean over the
// samples of each channel's instance statistics, as torch's InstanceNorm does. A
// std::invalid_argument for groups of several channels, which have no per-channel statistics.
template <class T>
void move_running_statistics(const Grouping& grouping, const Moments& batch, const Rows& groups,
                             const RunningStats<T>& running);

}  // namespace xgrad
