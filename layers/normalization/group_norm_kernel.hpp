// GroupNorm's forward and backward over raw (N, C, S) data, as the layer's graph node and the
// benchmarks call them. Both walks below take the same statistics, per (sample, group) over the
// (1, N·G, (C/G)·S) view, and differ in what a row of the elementwise passes is:
//  - a row per (n, c), gamma and beta folded into each row's coefficients (Grouping::per_sample);
//  - where 0 < S < kShortRun and a group has several channels and at least kShortRun elements,
//    a row per group, normalized as LayerNorm's rows are, gamma and beta per element in the
//    epilogue (elementwise_affine.hpp), their gradients by its column sums. Rows per (n, c) would
//    be shorter than a vector, each with coefficients of its own: the backward's per-row sums and
//    coefficients as many as the elements (bench/RESULTS.md, "GroupNorm's short rows").
// With one channel per group (InstanceNorm's grouping) a row is a group either way: the first walk.
#pragma once

#include <cstddef>

#include "layers/normalization/channel_reduce.hpp"
#include "layers/normalization/normalize.hpp"

namespace xgrad {

// Whether group_norm_forward and group_norm_backward walk rows per group (the second walk above).
bool group_norm_rows_per_group(const ChannelShape& shape, std::size_t groups);

// y = gamma_c·(x - mean)·invstd + beta_c with each (n, g)'s statistics. gamma and beta: C values
// each, or both null (no affine map; one of them null is a std::invalid_argument). y may not alias
// x. groups must divide C (Grouping::per_sample's ShapeError otherwise).
template <class T>
NormalizedBatch group_norm_forward(const ChannelShape& shape, std::size_t groups, const T* x, const T* gamma,
                                   const T* beta, double eps, T* y);

// The backward of group_norm_forward, gradients through the statistics, given dy; gamma and beta
// as the forward's. Each of grads' pointers may be null: not wanted.
template <class T>
void group_norm_backward(const ChannelShape& shape, std::size_t groups, const NormalizedBatch& batch, const T* dy,
                         const T* x, const T* gamma, const T* beta, const NormalizeGrads<T>& grads);

}  // namespace xgrad
