// Ghost BN's forward and backward over raw (N, C, S) data, as the layer's graph node and the
// benchmarks call them: BatchNorm's stages (normalize.hpp) over each virtual batch, a chunk of
// consecutive samples whose (samples, C, S) values are contiguous. Small chunks run in parallel
// with one another: a small chunk's passes split into few tasks or none, so that such chunks in
// turn leave threads idle and pay each pass's fork and join once a chunk. What each chunk computes
// does not depend on which thread runs it, and what is added over the chunks is added in chunk
// order, so the bits are those of normalizing the chunks in turn, whatever the thread count.
#pragma once

#include <cstddef>
#include <vector>

#include "layers/normalization/normalize.hpp"

namespace xgrad {

// One virtual batch: samples [first, first + samples) of the batch.
struct VirtualBatch {
    std::size_t first;
    std::size_t samples;
};

// torch.split's chunks of `size` samples, the last one smaller when size does not divide n; none
// for n = 0. A std::invalid_argument for size 0.
std::vector<VirtualBatch> virtual_batches(std::size_t n, std::size_t size);

// Running statistics moved once per chunk, in chunk order: chunk k by factors[k].
template <class T>
struct ChunkRunningStats {
    T* mean;  // one value per channel
    T* var;
    std::vector<double> factors;
};

// Each chunk of `chunks` normalized with its own statistics and gamma and beta (one value per
// channel, or null for 1 and 0), into y; then `running` moved, after all chunks (a chunk that
// throws moves nothing). One NormalizedBatch a chunk, for the backward. A std::invalid_argument
// unless running has one factor a chunk.
template <class T>
std::vector<NormalizedBatch> ghost_batch_norm_forward(const ChannelShape& shape, const std::vector<VirtualBatch>& chunks,
                                                      const T* x, const T* gamma, const T* beta, double eps,
                                                      const ChunkRunningStats<T>& running, T* y);

// The backward of ghost_batch_norm_forward, gradients through each chunk's statistics: dx chunk by
// chunk, dgamma and dbeta the chunks' sums added in double in chunk order. Each of grads' pointers
// may be null: not wanted.
template <class T>
void ghost_batch_norm_backward(const ChannelShape& shape, const std::vector<VirtualBatch>& chunks,
                               const std::vector<NormalizedBatch>& batches, const T* dy, const T* x, const T* gamma,
                               const T* beta, const NormalizeGrads<T>& grads);

}  // namespace xgrad
