// The normalization stages composed: the forward and backward of every normalization layer, over
// raw row-major data seen as (N, C, S), for any grouping (grouping.hpp), apart from the graph so
// that the benchmarks time them directly. Each is the same sequence of public stages a caller could
// run itself (and SyncBatchNorm does, with an all-reduce between them):
//   forward   statistics (statistics.hpp) -> per-group normalization -> [renorm correction]
//             -> fold (fold.hpp) -> apply with the epilogue (elementwise.hpp)
//   backward  backward sums (backward_sums.hpp) -> fold_backward -> apply_backward
// walked group block by group block while a block stays in cache (blocked.hpp). T is float or
// double; everything per group or channel is in double; results do not depend on the thread count.
// Instantiated for float and double with NoEpilogue, ReluEpilogue, TluEpilogue and ElementwiseAffineEpilogue.
#pragma once

#include <array>
#include <cstddef>
#include <functional>
#include <optional>
#include <vector>

#include "layers/normalization/epilogue.hpp"
#include "layers/normalization/fold.hpp"
#include "layers/normalization/grouping.hpp"
#include "layers/normalization/running_statistics.hpp"

namespace xgrad {

enum class Centring {
    mean,  // x - mean, over the batch variance (BatchNorm, GroupNorm, LayerNorm, InstanceNorm)
    none,  // x over the root mean square (FilterResponseNorm's ν²)
};

template <class T>
struct NormalizeOptions {
    double eps = 1e-5;
    // One value per channel; null stands for 1 and 0.
    const T* gamma = nullptr;
    const T* beta = nullptr;
    Centring centring = Centring::mean;
    // Moved by the batch's statistics (move_running_statistics): per channel, or per instance.
    std::optional<RunningStats<T>> running = std::nullopt;
    // Batch Renorm, per channel: r and d from `running` as it was before this batch.
    std::optional<RenormLimits> renorm = std::nullopt;
    // Where the batch's moments are left, for a caller that moves running statistics itself after
    // several batches (Ghost BN's chunks, normalized in parallel); null: not kept.
    Moments* moments = nullptr;
};

// What a forward normalized with: what its backward needs.
struct NormalizedBatch {
    Normalization norm;
    std::optional<RenormCorrection> renorm;
};

// The forward with the batch's statistics. y may not alias x. A std::invalid_argument for renorm
// without running statistics or over a grouping that is not per channel.
template <class T, class Epilogue>
NormalizedBatch normalize_batch(const Grouping& grouping, const T* x, const NormalizeOptions<T>& options,
                                const Epilogue& epilogue, T* y);

// An elementwise pass of the caller's own over the rows of `rows` with the forward's coefficients:
// in the calling thread for a block, in parallel over the tensor for Rows::all.
template <class T>
using BlockApply = std::function<void(const Affine<T>& coefficients, const Rows& rows)>;

// normalize_batch with the caller's elementwise pass (BatchNormReLUMaxPool2d's, which pools as it
// applies): stages 1 and 2 and then `apply` block of groups by block of groups while a block's
// `bytes_per_element` (over what apply reads and writes) stay in cache (blocked.hpp), or each once
// over the whole tensor; the running statistics moved.
template <class T>
NormalizedBatch normalize_batch_by_blocks(const Grouping& grouping, const T* x, const NormalizeOptions<T>& options,
                                          std::size_t bytes_per_element, const BlockApply<T>& apply);

// The forward with given statistics (running ones: eval). Only gamma and beta of options are read.
// y may be x, but must not overlap it otherwise (elementwise.hpp).
template <class T, class Epilogue>
void normalize_with(const Grouping& grouping, const Normalization& norm, const T* x, const NormalizeOptions<T>& options,
                    const Epilogue& epilogue, T* y);

template <class T>
struct NormalizeGrads {
    T* dx = nullptr;      // each may be null: not wanted
    T* dgamma = nullptr;  // one per channel
    T* dbeta = nullptr;
};

// The backward of a forward that returned `batch` (through = batch statistics), or of
// normalize_with (constants; batch.renorm empty), given dy. gamma and beta are the forward's (beta
// is read only by an epilogue that recomputes its input). Returns the epilogue's extra sums per
// channel (TLU: tau's gradient). dx may not alias dy or x.
template <class T, class Epilogue>
std::vector<std::array<double, Epilogue::extra_sums>> normalize_backward(
    const Grouping& grouping, const NormalizedBatch& batch, GradientThrough through, const T* dy, const T* x,
    const T* gamma, const T* beta, const Epilogue& epilogue, const NormalizeGrads<T>& grads);

}  // namespace xgrad
