// Stage 1 of every normalization: statistics per group (grouping.hpp), accumulated in double by
// the per-channel reduction over the grouping's statistics view, so that the bits do not depend on
// the thread count. The statistics are separate calls from the elementwise passes so that a
// cross-process reduction can sit between them (SyncBatchNorm combines each process's
// (count, mean, var) into the global batch's with Chan et al.'s pairwise update).
//
// One pass over shifted data: with k the mean of a group's first four elements, Σ(x - k) and
// Σ(x - k)² give mean = k + Σ(x - k)/n and var = (Σ(x - k)² - (Σ(x - k))²/n)/n, in one read rather
// than the two of mean-then-centred-squares. Σx² - n·mean² would lose the variance of data with a
// large mean and a small spread; the shift removes the mean. What is left cancels by the factor
// Σ(x - k)²/Σ(x - mean)² = 1 + (mean - k)²/var, which multiplies the rounding of the sums: where
// it passes 8 (k far out in its group), that group's statistics are taken again in two passes,
// so that no group's are less accurate than two passes' by more than that factor.
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

// The stages in units of groups: `groups` is all of them or a block; outputs have one entry per
// group, of which those of `groups` are written.
template <class T>
void group_moments(const Grouping& grouping, const T* x, const Rows& groups, Moments& out);

// Σx², for statistics about zero (FilterResponseNorm's ν²).
template <class T>
void group_squares(const Grouping& grouping, const T* x, const Rows& groups, std::span<double> out);

// group_moments over every group. A std::invalid_argument when a group has no element.
template <class T>
Moments batch_moments(const Grouping& grouping, const T* x);

}  // namespace xgrad
