// LayerNorm's forward and backward over raw (rows, columns) data, a row per normalized sample,
// with its weight and bias elementwise along a row (elementwise_affine.hpp), as the layer's graph
// node and the benchmarks call them.
//
// Rows need their statistics, or in the backward their sums, over the whole row before any of their
// elements is written; the weight and bias are as long as a row, and their gradients are sums down
// the columns, over the rows. Row by row, the forward reads gamma and beta once a row; the backward
// takes three passes over dy and x: the row sums, dx, and the column sums. Here, after the rows'
// statistics or sums, one pass over blocks of columns, all rows of a block in turn, writes y or dx,
// with the block's gamma and beta (and, in the backward, its columns' sums) staying in L1 across
// the rows (bench/RESULTS.md, "LayerNorm by column blocks"). y and dx are the same bits as the row
// by row passes'. Each term of dgamma is a product in T, dy·x̂ with x̂ around the T-rounded mean and
// its offset, summed in double over the rows in row order. Many short rows (fewer than 256 columns
// over a tensor the passes split among threads) take the row passes and elementwise_affine_backward
// instead, as does a backward that wants dx or the parameters' gradients but not both: other bits,
// fixed by the shape and the gradients asked for. Nothing depends on the thread count.
#pragma once

#include <cstddef>

#include "layers/normalization/elementwise_affine.hpp"
#include "layers/normalization/normalize.hpp"

namespace xgrad {

// What normalize_batch over Grouping::per_row(rows, columns) with `affine` as its
// epilogue computes, the same bits: the statistics by its walk, y by the column pass, block of rows
// by block of rows where the cache-blocked walk keeps a block in L2 (blocked.hpp), else over all
// rows after all the statistics (many short rows: by normalize_batch). y may not alias x.
template <class T>
NormalizedBatch layer_norm_forward(std::size_t rows, std::size_t columns, const T* x,
                                   const ElementwiseAffineEpilogue<T>& affine, double eps, T* y);

// The backward of layer_norm_forward (or of normalize_batch over Grouping::per_row(rows, columns)
// with `affine` as its epilogue), gradients through the statistics, given dy. Each of
// grads' pointers may be null: not wanted (dgamma and dbeta have `columns` values). dx may not
// alias dy or x.
template <class T>
void layer_norm_backward(std::size_t rows, std::size_t columns, const NormalizedBatch& batch, const T* dy,
                         const T* x, const ElementwiseAffineEpilogue<T>& affine, const NormalizeGrads<T>& grads);

}  // namespace xgrad
