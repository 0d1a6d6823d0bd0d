// Stage 1 of every normalization: statistics per group (grouping.hpp), accumulated in double by
// the per-channel reduction over the grouping's statistics view, so that the bits do not depend on
// the thread count. The sums are separate calls from the elementwise passes so that a cross-process
// all-reduce can sit between them (SyncBatchNorm): the mean of the global batch is the reduced Σx
// over the reduced count, and its variance the reduced Σ(x - mean)².
//
// Two passes, the mean and then the centred sum of squares: Σ(x - mean)² does not cancel where
// Σx² - n·mean² would, so data with a large mean and a small spread keep their variance.
#pragma once

#include <cstddef>
#include <span>
#include <vector>

#include "layers/normalization/grouping.hpp"

namespace xgrad {

// Per group.
struct Moments {
    std::vector<double> mean;
    std::vector<double> var;  // biased: Σ(x - mean)² / group_size
};

// The stages in units of groups: `groups` is all of them or a block; out has one entry per group.
template <class T>
void group_sums(const Grouping& grouping, const T* x, const Rows& groups, std::span<double> sum);

template <class T>
void group_centered_squares(const Grouping& grouping, const T* x, std::span<const double> mean, const Rows& groups,
                            std::span<double> out);

// Σx², for statistics about zero (FilterResponseNorm's ν²).
template <class T>
void group_squares(const Grouping& grouping, const T* x, const Rows& groups, std::span<double> out);

// The two passes over every group: the mean and the biased variance. A std::invalid_argument when
// a group has no element.
template <class T>
Moments batch_moments(const Grouping& grouping, const T* x);

}  // namespace xgrad
