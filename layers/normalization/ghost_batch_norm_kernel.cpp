#include "layers/normalization/ghost_batch_norm_kernel.hpp"

#include <algorithm>
#include <stdexcept>
#include <string>

#include <tbb/parallel_for.h>

#include "autodiff/threads.hpp"
#include "layers/normalization/runs.hpp"

namespace xgrad {

namespace {

// A chunk of the (N, C, S) batch: BatchNorm's grouping of its (samples, C, S) values, which start
// offset(batch, chunk) elements into the batch's.
Grouping chunk_grouping(const ChannelShape& batch, const VirtualBatch& chunk) {
    return Grouping::per_channel(ChannelShape{chunk.samples, batch.c, batch.s});
}

std::size_t offset(const ChannelShape& batch, const VirtualBatch& chunk) { return chunk.first * batch.c * batch.s; }

// A chunk's x of at most this many bytes (a core's L2 on the Intel host measured) may run beside
// other chunks.
constexpr std::size_t kChunkInParallelBytes = std::size_t{1} << 21;

// f(k) for every chunk k: in parallel with several threads, where the batch is at least two tasks'
// worth of elements and a chunk's x is small; in turn otherwise, each chunk's passes then parallel
// within. At 2 threads, in parallel took 0.66x the time in turn at (256, 1024) in chunks of 64 and
// 0.86x to 0.95x at (64, 512), (64, 64, 196), (64, 32, 784) and (32, 256, 196) in chunks of 8 or
// 16, but 1.55x at (60, 100) in chunks of 15 (6,000 elements in all) and 1.17x at (16, 3, 50176)
// in chunks of 4 (2.4 MB of x each; bench/RESULTS.md, "Ghost BN's chunks in parallel").
template <class T, class F>
void for_each_chunk(const ChannelShape& shape, const std::vector<VirtualBatch>& chunks, const F& f) {
    using normalization_detail::kTaskElems;
    const std::size_t largest = chunks.empty() ? 0 : chunks.front().samples * shape.c * shape.s;
    if (available_threads() > 1 && shape.size() >= 2 * kTaskElems && largest * sizeof(T) <= kChunkInParallelBytes) {
        tbb::parallel_for(std::size_t{0}, chunks.size(), f);
        return;
    }
    for (std::size_t k = 0; k < chunks.size(); ++k) f(k);
}

}  // namespace

std::vector<VirtualBatch> virtual_batches(std::size_t n, std::size_t size) {
    if (size == 0) throw std::invalid_argument("Ghost BN: virtual batches of 0 samples");
    std::vector<VirtualBatch> chunks;
    for (std::size_t first = 0; first < n; first += size) chunks.push_back({first, std::min(size, n - first)});
    return chunks;
}

template <class T>
std::vector<NormalizedBatch> ghost_batch_norm_forward(const ChannelShape& shape, const std::vector<VirtualBatch>& chunks,
                                                      const T* x, const T* gamma, const T* beta, double eps,
                                                      const ChunkRunningStats<T>& running, T* y) {
    if (running.factors.size() != chunks.size()) {
        throw std::invalid_argument("Ghost BN forward: " + std::to_string(chunks.size()) + " chunks but " +
                                    std::to_string(running.factors.size()) + " running factors");
    }
    std::vector<NormalizedBatch> batches(chunks.size());
    std::vector<Moments> moments(chunks.size());
    for_each_chunk<T>(shape, chunks, [&](std::size_t k) {
        NormalizeOptions<T> options;
        options.eps = eps;
        options.gamma = gamma;
        options.beta = beta;
        options.moments = &moments[k];
        const std::size_t at = offset(shape, chunks[k]);
        batches[k] = normalize_batch(chunk_grouping(shape, chunks[k]), x + at, options, NoEpilogue{}, y + at);
    });
    // After all chunks, in chunk order: as one BatchNorm called on each chunk in turn moves them.
    for (std::size_t k = 0; k < chunks.size(); ++k) {
        move_running_statistics(chunk_grouping(shape, chunks[k]), moments[k], Rows::all(shape.c),
                                RunningStats<T>{running.mean, running.var, running.factors[k]});
    }
    return batches;
}

template <class T>
void ghost_batch_norm_backward(const ChannelShape& shape, const std::vector<VirtualBatch>& chunks,
                               const std::vector<NormalizedBatch>& batches, const T* dy, const T* x, const T* gamma,
                               const T* beta, const NormalizeGrads<T>& grads) {
    if (batches.size() != chunks.size()) {
        throw std::invalid_argument("Ghost BN backward: " + std::to_string(chunks.size()) + " chunks but " +
                                    std::to_string(batches.size()) + " forwards");
    }
    const std::size_t c = shape.c;
    // Each chunk's dgamma and dbeta in T, as BatchNorm's backward gives them.
    std::vector<T> chunk_dgamma(grads.dgamma ? chunks.size() * c : 0);
    std::vector<T> chunk_dbeta(grads.dbeta ? chunks.size() * c : 0);
    for_each_chunk<T>(shape, chunks, [&](std::size_t k) {
        const std::size_t at = offset(shape, chunks[k]);
        const NormalizeGrads<T> chunk_grads{grads.dx ? grads.dx + at : nullptr,
                                            grads.dgamma ? chunk_dgamma.data() + k * c : nullptr,
                                            grads.dbeta ? chunk_dbeta.data() + k * c : nullptr};
        normalize_backward(chunk_grouping(shape, chunks[k]), batches[k], GradientThrough::batch(), dy + at, x + at,
                           gamma, beta, NoEpilogue{}, chunk_grads);
    });
    const auto add_up = [&](const std::vector<T>& per_chunk, T* out) {
        if (!out) return;
        for (std::size_t channel = 0; channel < c; ++channel) {
            double sum = 0.0;
            for (std::size_t k = 0; k < chunks.size(); ++k) sum += static_cast<double>(per_chunk[k * c + channel]);
            out[channel] = static_cast<T>(sum);
        }
    };
    add_up(chunk_dgamma, grads.dgamma);
    add_up(chunk_dbeta, grads.dbeta);
}

#define XGRAD_GHOST_BATCH_NORM_KERNEL(T)                                                                              \
    template std::vector<NormalizedBatch> ghost_batch_norm_forward(const ChannelShape&, const std::vector<VirtualBatch>&, \
                                                                   const T*, const T*, const T*, double,               \
                                                                   const ChunkRunningStats<T>&, T*);                   \
    template void ghost_batch_norm_backward(const ChannelShape&, const std::vector<VirtualBatch>&,                     \
                                            const std::vector<NormalizedBatch>&, const T*, const T*, const T*,         \
                                            const T*, const NormalizeGrads<T>&);
XGRAD_GHOST_BATCH_NORM_KERNEL(float)
XGRAD_GHOST_BATCH_NORM_KERNEL(double)
#undef XGRAD_GHOST_BATCH_NORM_KERNEL

}  // namespace xgrad
