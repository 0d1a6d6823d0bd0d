#include "layers/normalization/layer_norm_kernel.hpp"

#include <algorithm>
#include <span>
#include <string>
#include <type_traits>
#include <vector>

#include <tbb/blocked_range.h>
#include <tbb/parallel_for.h>

#include "autodiff/threads.hpp"
#include "layers/normalization/arithmetic.hpp"
#include "layers/normalization/backward_sums.hpp"
#include "layers/normalization/blocked.hpp"
#include "layers/normalization/runs.hpp"
#include "layers/normalization/streaming_store.hpp"

namespace xgrad {

namespace {

using normalization_detail::affine;
using normalization_detail::mul_add;

// Columns a block covers: its gamma and beta (4 KiB each in float) stay in L1 across the rows, its
// sums of dgamma and dbeta (2 x 1024 doubles) in L1 or L2.
constexpr std::size_t kColumnBlock = 1024;
// Tensors of kSerialBelow elements or more with fewer columns than this (many short rows) take
// the row passes, which split the rows among the threads: 16 column steps or fewer would leave
// most of a many-core host idle. A rule of the shape alone, not of the thread count, since the
// row passes sum dgamma and dbeta in another order (other bits).
constexpr std::size_t kColumnPassColumns = 256;
// Rows a sweep of a column block takes at once (column_pass).
constexpr std::size_t kRowsASweep = 4;
// A task's columns are a multiple of this: whole cache lines of floats where a row's length is.
constexpr std::size_t kColumnStep = 16;

// Whether the column passes take the row passes' place (kColumnPassColumns).
bool column_passes_fit(std::size_t rows, std::size_t columns) {
    return rows * columns < normalization_detail::kSerialBelow || columns >= kColumnPassColumns;
}

// Calls walk(c0, c1) over column ranges covering [0, columns): in the calling thread for small
// tensors or one thread, else in parallel tasks of kColumnStep-column steps (the last one short),
// about four a thread and, unless the partitioner halves them, of kTaskElems elements or more.
template <class Walk>
void split_columns(std::size_t rows, std::size_t columns, const Walk& walk) {
    using normalization_detail::kTaskElems;
    const std::size_t threads = static_cast<std::size_t>(available_threads());
    if (rows * columns < normalization_detail::kSerialBelow || threads == 1) {
        walk(std::size_t{0}, columns);
        return;
    }
    const std::size_t steps = (columns + kColumnStep - 1) / kColumnStep;
    const std::size_t grain = std::max({std::size_t{1}, kTaskElems / (rows * kColumnStep), steps / (4 * threads)});
    tbb::parallel_for(tbb::blocked_range<std::size_t>(0, steps, grain), [&](const tbb::blocked_range<std::size_t>& r) {
        walk(r.begin() * kColumnStep, std::min(columns, r.end() * kColumnStep));
    });
}

// The pass over column blocks of the rows of `rows`, writing dst (streamed past the caches if
// `streamed`): for each block [b0, b0 + len) of at most kColumnBlock columns, `auto block =
// make_block(b0, len)`, then block.sweep(std::integral_constant<R>, r0, out) for the rows in sweeps
// of kRowsASweep (the last rows one at a time), out[k] the piece of row r0 + k to write, then
// block.finish(). In parallel over the columns for Rows::all, in the calling thread for a block.
template <class T, class MakeBlock>
void column_pass(const Rows& rows, std::size_t columns, T* dst, bool streamed, const MakeBlock& make_block) {
    const auto walk = [&](std::size_t c0, std::size_t c1) {
        constexpr std::size_t R = kRowsASweep;
        alignas(64) T pieces[R][kColumnBlock];
        for (std::size_t b0 = c0; b0 < c1; b0 += kColumnBlock) {
            const std::size_t len = std::min(kColumnBlock, c1 - b0);
            auto block = make_block(b0, len);
            const auto target = [&](std::size_t r, std::size_t k) {
                return streamed ? pieces[k] : dst + r * columns + b0;
            };
            const auto flush = [&](std::size_t r, std::size_t count) {
                if (!streamed) return;
                for (std::size_t k = 0; k < count; ++k) {
                    normalization_detail::stream_copy(dst + (r + k) * columns + b0, pieces[k], len);
                }
            };
            std::size_t r = rows.begin;
            for (; r + R <= rows.end; r += R) {
                T* out[R];
                for (std::size_t k = 0; k < R; ++k) out[k] = target(r + k, k);
                block.sweep(std::integral_constant<std::size_t, R>{}, r, out);
                flush(r, R);
            }
            for (; r < rows.end; ++r) {
                T* const out[1] = {target(r, 0)};
                block.sweep(std::integral_constant<std::size_t, 1>{}, r, out);
                flush(r, 1);
            }
            block.finish();
        }
        if (streamed) normalization_detail::stream_fence();
    };
    if (rows.whole) {
        split_columns(rows.end - rows.begin, columns, walk);
    } else {
        walk(0, columns);
    }
}

// Whether a column pass streams its output: past the caches, in the cache-blocked walk or over all
// rows alike (the whole-tensor elementwise passes do not, elementwise.hpp, since their tasks of
// kTaskElems would each wait on a fence; a column pass's tasks are a quarter of a thread's share).
bool column_pass_streams(std::size_t elements, std::size_t element_bytes) {
    return normalization_detail::kStreamingStores && past_the_caches(elements, element_bytes);
}

// The forward's block: y = ((x - centre)·scale + shift)·gamma_j + beta_j, the elementwise pass's
// arithmetic (elementwise.hpp, ElementwiseAffineEpilogue), so the same bits.
template <class T>
struct ForwardBlock {
    std::size_t columns, b0, len;
    const Affine<T>& a;
    const T* gamma;
    const T* beta;
    const T* x;

    template <std::size_t R>
    void sweep(std::integral_constant<std::size_t, R>, std::size_t r0, T* const (&out)[R]) const {
        for (std::size_t k = 0; k < R; ++k) {
            const std::size_t r = r0 + k;
            const T c = a.centre.at(r), s = a.scale.at(r), h = a.shift.at(r);
            const T* __restrict xr = x + r * columns + b0;
            const T* __restrict g = gamma + b0;
            const T* __restrict b = beta + b0;
            T* __restrict o = out[k];
            for (std::size_t j = 0; j < len; ++j) o[j] = mul_add(affine(xr[j], c, s, h), g[j], b[j]);
        }
    }
    void finish() const {}
};

// What a row's elements share in the backward's block: dx's coefficients (coefficients.hpp) and
// x̂'s, x̂ = (x - centre)·scale + offset: the forward's coefficients without gamma and beta (the
// same centre, the mean rounded to T).
template <class T>
struct RowTerms {
    T alpha, centre, k, shift;
    T scale, offset;
};

template <class T>
std::vector<RowTerms<T>> row_terms(const InputGrad<T>& d, const Affine<T>& x_hat, std::size_t rows) {
    std::vector<RowTerms<T>> terms(rows);
    for (std::size_t r = 0; r < rows; ++r) {
        terms[r] = {d.alpha.at(r), d.centre.at(r), d.k.at(r), d.shift.at(r), x_hat.scale.at(r), x_hat.shift.at(r)};
    }
    return terms;
}

// The backward's block: dx as apply_backward computes it (the same bits), and each element's
// terms added to its column's sums of dgamma and dbeta, row after row; a sweep of R rows loads and
// stores each column's sums once for all of them.
template <class T>
struct BackwardBlock {
    std::size_t columns, b0, len;
    const std::vector<RowTerms<T>>& terms;
    const T* gamma;
    const T* dy;
    const T* x;
    T* dgamma_out;
    T* dbeta_out;
    alignas(64) double dgamma[kColumnBlock] = {};
    alignas(64) double dbeta[kColumnBlock] = {};

    template <std::size_t R>
    void sweep(std::integral_constant<std::size_t, R>, std::size_t r0, T* const (&out)[R]) {
        const T* dyr[R];
        const T* xr[R];
        RowTerms<T> t[R];
        for (std::size_t i = 0; i < R; ++i) {
            dyr[i] = dy + (r0 + i) * columns + b0;
            xr[i] = x + (r0 + i) * columns + b0;
            t[i] = terms[r0 + i];
        }
        const T* __restrict g = gamma + b0;
        double* __restrict sums_g = dgamma;
        double* __restrict sums_b = dbeta;
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC ivdep
#endif
        for (std::size_t j = 0; j < len; ++j) {
            double sg = sums_g[j];
            double sb = sums_b[j];
            for (std::size_t i = 0; i < R; ++i) {
                const T v = xr[i][j];
                const T d = dyr[i][j];
                out[i][j] = mul_add(d * g[j], t[i].alpha, affine(v, t[i].centre, t[i].k, t[i].shift));
                sg += static_cast<double>(d * affine(v, t[i].centre, t[i].scale, t[i].offset));
                sb += static_cast<double>(d);
            }
            sums_g[j] = sg;
            sums_b[j] = sb;
        }
    }
    void finish() const {
        for (std::size_t j = 0; j < len; ++j) {
            if (dgamma_out) dgamma_out[b0 + j] = static_cast<T>(dgamma[j]);
            if (dbeta_out) dbeta_out[b0 + j] = static_cast<T>(dbeta[j]);
        }
    }
};

}  // namespace

template <class T>
NormalizedBatch layer_norm_forward(std::size_t rows, std::size_t columns, const T* x,
                                   const ElementwiseAffineEpilogue<T>& affine, double eps, T* y) {
    const Grouping grouping = Grouping::per_row(rows, columns);
    NormalizeOptions<T> options;
    options.eps = eps;
    if (!column_passes_fit(rows, columns)) return normalize_batch(grouping, x, options, affine, y);
    const auto bound = affine.bind_run(std::false_type{}, 0);
    const bool streamed = column_pass_streams(rows * columns, sizeof(T));
    const auto pass = [&](const Affine<T>& a, const Rows& block) {
        column_pass(block, columns, y, streamed, [&](std::size_t b0, std::size_t len) {
            return ForwardBlock<T>{columns, b0, len, a, bound.gamma, bound.beta, x};
        });
    };
    // Blocks of rows whose x and y stay in a core's cache: each block's pass after its statistics.
    const auto walk = normalization_detail::group_walk(grouping, 2 * sizeof(T),
                                                       static_cast<std::size_t>(available_threads()));
    if (walk.blocked && !walk.last_level) {
        return normalize_batch_by_blocks<T>(grouping, x, options, 2 * sizeof(T), pass);
    }
    // Otherwise all the statistics first (a block's rows read once while in cache), then one pass
    // over all rows, so that each block of gamma and beta is read once rather than once a row. (The
    // walk folds coefficients it does not keep: a few values a row.)
    NormalizedBatch batch =
        normalize_batch_by_blocks<T>(grouping, x, options, sizeof(T), [](const Affine<T>&, const Rows&) {});
    Affine<T> a(grouping.row_view());
    fold_forward(grouping, batch.norm, static_cast<const T*>(nullptr), static_cast<const T*>(nullptr), nullptr,
                 Rows::all(rows), a);
    pass(a, Rows::all(rows));
    return batch;
}

template <class T>
void layer_norm_backward(std::size_t rows, std::size_t columns, const NormalizedBatch& batch, const T* dy,
                         const T* x, const ElementwiseAffineEpilogue<T>& affine, const NormalizeGrads<T>& grads) {
    const Grouping grouping = Grouping::per_row(rows, columns);
    const GradientThrough through = GradientThrough::batch();
    if (!grads.dx || (!grads.dgamma && !grads.dbeta) || !column_passes_fit(rows, columns)) {
        if (grads.dx) {
            normalize_backward<T>(grouping, batch, through, dy, x, nullptr, nullptr, affine,
                                  NormalizeGrads<T>{grads.dx, nullptr, nullptr});
        }
        elementwise_affine_backward(ChannelShape{rows, columns, 1}, 1, batch.norm, dy, x, grads.dgamma, grads.dbeta);
        return;
    }
    if (batch.norm.mean.size() != rows || batch.norm.invstd.size() != rows) {
        throw ShapeError("LayerNorm backward: expected " + std::to_string(rows) +
                         " means and inverse deviations, got " + std::to_string(batch.norm.mean.size()) + " and " +
                         std::to_string(batch.norm.invstd.size()));
    }
    using Epilogue = ElementwiseAffineEpilogue<T>;
    const ChannelShape view = grouping.row_view();
    std::vector<RowSums<Epilogue>> sums(rows);
    backward_sums(view, std::span<const double>(batch.norm.mean), static_cast<const Affine<T>*>(nullptr), affine, dy,
                  x, Rows::all(rows), std::span(sums));
    InputGrad<T> d(view);
    fold_backward<T, 2>(grouping, batch.norm, nullptr, nullptr, through, std::span<const RowSums<Epilogue>>(sums),
                        Rows::all(rows), &d, {}, {});
    Affine<T> x_hat(view);
    fold_forward(grouping, batch.norm, static_cast<const T*>(nullptr), static_cast<const T*>(nullptr), nullptr,
                 Rows::all(rows), x_hat);
    const std::vector<RowTerms<T>> terms = row_terms(d, x_hat, rows);
    const T* gamma = affine.bind_run(std::false_type{}, 0).gamma;
    const bool streamed = column_pass_streams(rows * columns, sizeof(T));
    column_pass(Rows::all(rows), columns, grads.dx, streamed, [&](std::size_t b0, std::size_t len) {
        return BackwardBlock<T>{columns, b0, len, terms, gamma, dy, x, grads.dgamma, grads.dbeta};
    });
}

template NormalizedBatch layer_norm_forward(std::size_t, std::size_t, const float*,
                                            const ElementwiseAffineEpilogue<float>&, double, float*);
template NormalizedBatch layer_norm_forward(std::size_t, std::size_t, const double*,
                                            const ElementwiseAffineEpilogue<double>&, double, double*);
template void layer_norm_backward(std::size_t, std::size_t, const NormalizedBatch&, const float*, const float*,
                                  const ElementwiseAffineEpilogue<float>&, const NormalizeGrads<float>&);
template void layer_norm_backward(std::size_t, std::size_t, const NormalizedBatch&, const double*, const double*,
                                  const ElementwiseAffineEpilogue<double>&, const NormalizeGrads<double>&);

}  // namespace xgrad
