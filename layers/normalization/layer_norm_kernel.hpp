// LayerNorm's backward over raw (rows, columns) data, a row per normalized sample, with its weight
// and bias elementwise along a row (elementwise_affine.hpp), as the layer's graph node and the
// benchmarks call it.
//
// dx needs each row's sums over the whole row (backward_sums.hpp) before any element of it, and
// dweight and dbias are sums down the columns, over the rows. Taken apart, that is three passes
// over dy and x: the row sums, dx, and the column sums. Here the last two are one: after the row
// sums, a pass over blocks of columns, all rows of a block in turn, writes dx and adds each
// element's terms to its column's sums, which stay in L1 for the block (bench/RESULTS.md,
// "LayerNorm's input gradient and its weight's in one pass"). dx is the same bits as the
// separate passes', the column sums are in double, summed over the rows in row order: neither
// depends on the thread count.
#pragma once

#include <cstddef>

#include "layers/normalization/elementwise_affine.hpp"
#include "layers/normalization/normalize.hpp"

namespace xgrad {

// The backward of normalize_batch over Grouping::per_sample({rows, 1, columns}, 1) with `affine`
// as its epilogue, gradients through the statistics, given dy. Each of grads' pointers may be
// null: not wanted (dgamma and dbeta have `columns` values). dx may not alias dy or x.
template <class T>
void layer_norm_backward(std::size_t rows, std::size_t columns, const NormalizedBatch& batch, const T* dy, const T* x,
                         const ElementwiseAffineEpilogue<T>& affine, const NormalizeGrads<T>& grads);

}  // namespace xgrad
