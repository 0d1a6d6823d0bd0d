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
#include "layers/normalization/runs.hpp"
#include "layers/normalization/streaming_store.hpp"

namespace xgrad {

namespace {

using normalization_detail::affine;
using normalization_detail::mul_add;

// Columns whose sums a block keeps: 2 x 1024 doubles, 16 KiB, stay in L1 beside the rows' pieces.
constexpr std::size_t kColumnBlock = 1024;
// Fewer columns than this over a parallel tensor leave too few blocks for the threads: such
// tensors (many short rows) take the separate passes, which split the rows.
constexpr std::size_t kFusedColumns = 256;
// Rows a sweep of a column block takes at once (fused_rows).
constexpr std::size_t kRowsASweep = 4;
// A task's columns are a multiple of this: whole cache lines of floats.
constexpr std::size_t kColumnStep = 16;

// What a row's elements share in the fused pass: dx's coefficients (coefficients.hpp) and x̂'s,
// x̂ = (x - centre)·scale + shift, as the forward's around the same centre.
template <class T>
struct RowTerms {
    T alpha, centre, k, shift;
    T scale, offset;
};

template <class T>
std::vector<RowTerms<T>> row_terms(const InputGrad<T>& d, const Normalization& norm, std::size_t rows) {
    std::vector<RowTerms<T>> terms(rows);
    for (std::size_t r = 0; r < rows; ++r) {
        const double centre = static_cast<double>(static_cast<T>(norm.mean[r]));
        terms[r] = {d.alpha.at(r),
                    d.centre.at(r),
                    d.k.at(r),
                    d.shift.at(r),
                    static_cast<T>(norm.invstd[r]),
                    static_cast<T>((centre - norm.mean[r]) * norm.invstd[r])};
    }
    return terms;
}

// Rows [r0, r0 + R) of columns [b0, b0 + len): dx written to out[k] (row r0 + k's piece) and each
// element's terms added to its column's sums, row after row: R rows a sweep load and store each
// column's sums once for all of them.
template <std::size_t R, class T>
void fused_rows(std::size_t columns, std::size_t r0, std::size_t b0, std::size_t len,
                const std::vector<RowTerms<T>>& terms, const T* __restrict gamma, const T* dy, const T* x,
                T* const (&out)[R], double* __restrict dgamma, double* __restrict dbeta) {
    const T* dyr[R];
    const T* xr[R];
    RowTerms<T> t[R];
    for (std::size_t k = 0; k < R; ++k) {
        dyr[k] = dy + (r0 + k) * columns + b0;
        xr[k] = x + (r0 + k) * columns + b0;
        t[k] = terms[r0 + k];
    }
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC ivdep
#endif
    for (std::size_t j = 0; j < len; ++j) {
        double sg = dgamma[j];
        double sb = dbeta[j];
        for (std::size_t k = 0; k < R; ++k) {
            const T v = xr[k][j];
            const T d = dyr[k][j];
            out[k][j] = mul_add(d * gamma[b0 + j], t[k].alpha, affine(v, t[k].centre, t[k].k, t[k].shift));
            sg += static_cast<double>(d * affine(v, t[k].centre, t[k].scale, t[k].offset));
            sb += static_cast<double>(d);
        }
        dgamma[j] = sg;
        dbeta[j] = sb;
    }
}

// Columns [c0, c1) of every row: dx written (streamed past the caches if `streamed`), dgamma and
// dbeta summed over the rows in row order.
template <class T>
void fused_columns(std::size_t rows, std::size_t columns, std::size_t c0, std::size_t c1,
                   const std::vector<RowTerms<T>>& terms, const T* gamma, const T* dy, const T* x, bool streamed,
                   const NormalizeGrads<T>& grads) {
    constexpr std::size_t R = kRowsASweep;
    for (std::size_t b0 = c0; b0 < c1; b0 += kColumnBlock) {
        const std::size_t len = std::min(kColumnBlock, c1 - b0);
        alignas(64) double dgamma[kColumnBlock] = {};
        alignas(64) double dbeta[kColumnBlock] = {};
        alignas(64) T pieces[R][kColumnBlock];
        const auto target = [&](std::size_t r, std::size_t k) {
            return streamed ? pieces[k] : grads.dx + r * columns + b0;
        };
        const auto flush = [&](std::size_t r, std::size_t count) {
            if (!streamed) return;
            for (std::size_t k = 0; k < count; ++k) {
                normalization_detail::stream_copy(grads.dx + (r + k) * columns + b0, pieces[k], len);
            }
        };
        std::size_t r = 0;
        for (; r + R <= rows; r += R) {
            T* const out[R] = {target(r, 0), target(r + 1, 1), target(r + 2, 2), target(r + 3, 3)};
            fused_rows<R>(columns, r, b0, len, terms, gamma, dy, x, out, dgamma, dbeta);
            flush(r, R);
        }
        for (; r < rows; ++r) {
            T* const out[1] = {target(r, 0)};
            fused_rows<1>(columns, r, b0, len, terms, gamma, dy, x, out, dgamma, dbeta);
            flush(r, 1);
        }
        for (std::size_t j = 0; j < len; ++j) {
            if (grads.dgamma) grads.dgamma[b0 + j] = static_cast<T>(dgamma[j]);
            if (grads.dbeta) grads.dbeta[b0 + j] = static_cast<T>(dbeta[j]);
        }
    }
    if (streamed) normalization_detail::stream_fence();
}

}  // namespace

template <class T>
void layer_norm_backward(std::size_t rows, std::size_t columns, const NormalizedBatch& batch, const T* dy, const T* x,
                         const ElementwiseAffineEpilogue<T>& affine, const NormalizeGrads<T>& grads) {
    using normalization_detail::kSerialBelow;
    using normalization_detail::kTaskElems;
    const Grouping grouping = Grouping::per_sample({rows, 1, columns}, 1);
    const GradientThrough through = GradientThrough::batch();
    const std::size_t elements = rows * columns;
    const bool serial = elements < kSerialBelow;
    if (!grads.dx || (!grads.dgamma && !grads.dbeta) || (!serial && columns < kFusedColumns)) {
        if (grads.dx) {
            normalize_backward<T>(grouping, batch, through, dy, x, nullptr, nullptr, affine,
                                  NormalizeGrads<T>{grads.dx, nullptr, nullptr});
        }
        elementwise_affine_backward(ChannelShape{rows, columns, 1}, 1, batch.norm, dy, x, grads.dgamma, grads.dbeta);
        return;
    }
    if (batch.norm.mean.size() != rows || batch.norm.invstd.size() != rows) {
        throw ShapeError("LayerNorm backward: expected " + std::to_string(rows) + " means and inverse deviations, got " +
                         std::to_string(batch.norm.mean.size()) + " and " + std::to_string(batch.norm.invstd.size()));
    }
    using Epilogue = ElementwiseAffineEpilogue<T>;
    const ChannelShape view = grouping.row_view();
    std::vector<RowSums<Epilogue>> sums(rows);
    backward_sums(view, std::span<const double>(batch.norm.mean), static_cast<const Affine<T>*>(nullptr), affine, dy, x,
                  Rows::all(rows), std::span(sums));
    InputGrad<T> d(view);
    fold_backward<T, 2>(grouping, batch.norm, nullptr, nullptr, through, std::span<const RowSums<Epilogue>>(sums),
                        Rows::all(rows), &d, {}, {});
    const std::vector<RowTerms<T>> terms = row_terms(d, batch.norm, rows);
    const T* gamma = affine.bind_run(std::false_type{}, 0).gamma;
    const bool streamed = normalization_detail::kStreamingStores &&
                          past_the_caches(elements, sizeof(T));
    const std::size_t threads = static_cast<std::size_t>(available_threads());
    if (serial || threads == 1) {
        fused_columns(rows, columns, 0, columns, terms, gamma, dy, x, streamed, grads);
        return;
    }
    // Tasks of whole lines (steps of kColumnStep columns, the last one short), four a thread, each of
    // at least kTaskElems elements over the rows.
    const std::size_t steps = (columns + kColumnStep - 1) / kColumnStep;
    const std::size_t grain = std::max({std::size_t{1}, kTaskElems / (rows * kColumnStep), steps / (4 * threads)});
    tbb::parallel_for(tbb::blocked_range<std::size_t>(0, steps, grain), [&](const tbb::blocked_range<std::size_t>& r) {
        fused_columns(rows, columns, r.begin() * kColumnStep, std::min(columns, r.end() * kColumnStep), terms, gamma,
                      dy, x, streamed, grads);
    });
}

template void layer_norm_backward(std::size_t, std::size_t, const NormalizedBatch&, const float*, const float*,
                                  const ElementwiseAffineEpilogue<float>&, const NormalizeGrads<float>&);
template void layer_norm_backward(std::size_t, std::size_t, const NormalizedBatch&, const double*, const double*,
                                  const ElementwiseAffineEpilogue<double>&, const NormalizeGrads<double>&);

}  // namespace xgrad
