// How the elementwise passes and the backward sums walk the row view of a tensor (grouping.hpp):
// as contiguous runs that share one set of coefficients, in parallel blocks of at least
// kTaskElems elements, or serially for small tensors and for a block of the cache-blocked path.
#pragma once

#include <algorithm>
#include <cstddef>
#include <type_traits>

#include <tbb/blocked_range2d.h>
#include <tbb/parallel_for.h>

#include "layers/normalization/channel_reduce.hpp"

namespace xgrad::normalization_detail {

// Rows shorter than this (S) are too short to vectorize alone: where the view has several samples
// (BN's (N, C, S)), a sample's C·S elements are walked as one run with a coefficient per element.
inline constexpr std::size_t kShortRun = 16;
inline constexpr std::size_t kSerialBelow = 1 << 16;  // elements; smaller tensors spawn no task
inline constexpr std::size_t kTaskElems = 1 << 14;    // elements per parallel task, at least

// Whether runs merge the rows of a sample, and so coefficients are laid out per element of a row.
// A per-sample row view (1, rows, S) merges its rows only at S = 1, where per-row coefficients are
// per element already; at other short S it would need coefficient arrays as large as the tensor.
inline bool merges_rows(const ChannelShape& view) { return view.s < kShortRun && (view.n > 1 || view.s == 1); }

// How many consecutive samples' merged runs for_each_run hands over at once: they share their
// coefficients, so a pass loads each coefficient once for both. Four were slower than one at
// BatchNorm1d's (256, 1024) forward + backward, whose tensors are past a core's cache (a backward's
// four rows of dy, x and dx, more streams than the prefetchers follow); two are as fast there
// (bench/RESULTS.md, "Two samples' runs at a time").
inline constexpr std::size_t kMergedSamples = 2;

// Calls run(per_element, runs, offset, stride, length, first) on the contiguous runs that cover
// samples [n0, n1) of rows [c0, c1), `runs` (a std::integral_constant) runs at a time that share
// their coefficients, the r-th starting r·stride elements after `offset`:
//  - each (n, c) row of S elements alone (stride unused), with first = c and per_element =
//    std::false_type;
//  - where rows merge, the rows' part of each sample, kMergedSamples samples at a time (the last
//    ones alone), stride C·S, first = c0·S and per_element = std::true_type (the coefficients of
//    element k of a run are at first + k rather than at first).
template <class Run>
void for_each_run(const ChannelShape& sh, std::size_t n0, std::size_t n1, std::size_t c0, std::size_t c1,
                  const Run& run) {
    using One = std::integral_constant<std::size_t, 1>;
    if (!merges_rows(sh)) {
        for (std::size_t n = n0; n < n1; ++n) {
            for (std::size_t c = c0; c < c1; ++c) run(std::false_type{}, One{}, (n * sh.c + c) * sh.s, 0, sh.s, c);
        }
        return;
    }
    const std::size_t stride = sh.c * sh.s, len = (c1 - c0) * sh.s, first = c0 * sh.s;
    std::size_t n = n0;
    for (; n + kMergedSamples <= n1; n += kMergedSamples) {
        run(std::true_type{}, std::integral_constant<std::size_t, kMergedSamples>{}, n * stride + first, stride, len, first);
    }
    for (; n < n1; ++n) run(std::true_type{}, One{}, n * stride + first, stride, len, first);
}

// Calls body(n0, n1, c0, c1) on blocks covering the rows of `rows`: a block of rows as one block;
// all rows in parallel tasks of at least kTaskElems elements (whole samples when rows merge and
// there are several), or as one block for small tensors.
template <class Body>
void for_each_block(const ChannelShape& sh, const Rows& rows, const Body& body) {
    if (!rows.whole || sh.size() < kSerialBelow) {
        body(std::size_t{0}, sh.n, rows.begin, rows.end);
        return;
    }
    const std::size_t cgrain = merges_rows(sh) && sh.n > 1
                                   ? sh.c
                                   : std::max<std::size_t>(1, kTaskElems / std::max<std::size_t>(sh.s * sh.n, 1));
    const std::size_t ngrain = std::max<std::size_t>(1, kTaskElems / (cgrain * sh.s));
    tbb::parallel_for(tbb::blocked_range2d<std::size_t>(0, sh.n, ngrain, 0, sh.c, cgrain),
                      [&](const tbb::blocked_range2d<std::size_t>& r) {
                          body(r.rows().begin(), r.rows().end(), r.cols().begin(), r.cols().end());
                      });
}

}  // namespace xgrad::normalization_detail
