// An affine map elementwise along a sample, y = gamma_j·v + beta_j with j an element's position
// in its sample: an epilogue (epilogue.hpp) over a row view whose rows are groups of one sample
// (Grouping::per_sample over an (N·G, 1, M) view), so that gamma and beta, which vary along the
// row, ride in the elementwise pass rather than in the per-row coefficients (one value per row
// there). LayerNorm's rows are its samples (G = 1, its weight and bias elementwise); GroupNorm's
// short rows (group_norm_kernel.hpp) are its groups, its per-channel weight and bias repeated over
// each channel's S elements.
//
// Their gradients are sums over samples, not within a row: dgamma_c = Σ_(n,s) dy·x̂ and
// dbeta_c = Σ_(n,s) dy, the per-channel reduction over the (N, C, S) view
// (elementwise_affine_backward); so they cannot be the epilogue's per-row extra sums. LayerNorm's
// own kernels (layer_norm_kernel.hpp) add them in the pass that writes dx, but for many short rows.
#pragma once

#include <array>
#include <cstddef>
#include <utility>
#include <vector>

#include "layers/normalization/arithmetic.hpp"
#include "layers/normalization/channel_reduce.hpp"
#include "layers/normalization/fold.hpp"

namespace xgrad {

template <class T>
class ElementwiseAffineEpilogue {
public:
    static constexpr bool gate_reads_value = false;
    static constexpr std::size_t extra_sums = 0;

    // LayerNorm's: gamma and beta have `columns` values each, a row's (a sample's) length. Copied,
    // so that a backward multiplies by the gamma its forward used.
    ElementwiseAffineEpilogue(const T* gamma, const T* beta, std::size_t columns)
        : ElementwiseAffineEpilogue(std::vector<T>(gamma, gamma + columns), std::vector<T>(beta, beta + columns), 1) {}

    // GroupNorm's: one gamma and beta per channel of an (N, C, S) tensor, over rows of `groups`
    // groups a sample. A ShapeError unless groups divides C and a row has at least two
    // elements (rows of one element merge into runs that cross samples: runs.hpp). GroupNorm
    // builds it from the gamma and beta of the moment, in its forward and again in its backward, as
    // its other walk reads them.
    static ElementwiseAffineEpilogue per_channel(const T* gamma, const T* beta, const ChannelShape& shape,
                                                 std::size_t groups);

    // Element k of the bound run or row is in column (k - origin)·Step: a step known at compile
    // time, so that the loops load gamma and beta as vectors (with the step a variable, GCC built
    // the streamed pass's loop of single loads, and LayerNorm's elementwise pass at (32, 64, 3136)
    // took 3.3x GroupNorm's; bench/RESULTS.md).
    template <std::size_t Step>
    struct Bound {
        const T* gamma;
        const T* beta;
        std::size_t origin;
        T forward(T v, std::size_t k) const {
            return normalization_detail::mul_add(v, gamma[(k - origin) * Step], beta[(k - origin) * Step]);
        }
        T gate(T dy, T, std::size_t k) const { return dy * gamma[(k - origin) * Step]; }
        std::array<double, 0> extras(T, T, std::size_t) const { return {}; }
    };
    // k is the position in the run: a whole row, starting at the column of the row's place in its
    // sample; or, where the rows of the per-sample view (1, rows, M) merge (runs.hpp: only at
    // M = 1, so LayerNorm's of one column), rows of that one column each.
    template <class PerElement>
    Bound<PerElement::value ? 0 : 1> bind_run(PerElement, std::size_t first_row) const {
        if constexpr (PerElement::value) {
            return {gamma_.data(), beta_.data(), 0};
        } else {
            const std::size_t column = rows_per_sample_ == 1 ? 0 : first_row % rows_per_sample_ * row_length_;
            return {gamma_.data() + column, beta_.data() + column, 0};
        }
    }
    // k is the element's index in the tensor. Called per element where rows are short (the
    // reduction's rows layout): no division where a row is a sample.
    Bound<1> bind_row(std::size_t row) const {
        const std::size_t sample = rows_per_sample_ == 1 ? row : row / rows_per_sample_;
        return {gamma_.data(), beta_.data(), sample * gamma_.size()};
    }

private:
    ElementwiseAffineEpilogue(std::vector<T> gamma, std::vector<T> beta, std::size_t rows_per_sample)
        : gamma_(std::move(gamma)), beta_(std::move(beta)), rows_per_sample_(rows_per_sample),
          row_length_(gamma_.size() / rows_per_sample) {}

    std::vector<T> gamma_;  // one per element of a sample
    std::vector<T> beta_;
    std::size_t rows_per_sample_;
    std::size_t row_length_;
};

// dgamma_c = Σ_(n,s) dy·(x - mean)·invstd and dbeta_c = Σ_(n,s) dy per channel c of an (N, C, S)
// tensor whose sample n was normalized by `groups` groups of C/groups channels, group (n, g) with
// norm.mean[n·groups + g] and norm.invstd[n·groups + g] (LayerNorm: (rows, columns, 1), one group);
// in double, by the per-channel reduction (bits independent of the thread count). dgamma or dbeta
// null: not wanted. A ShapeError when norm does not hold N·groups statistics.
template <class T>
void elementwise_affine_backward(const ChannelShape& shape, std::size_t groups, const Normalization& norm, const T* dy,
                                 const T* x, T* dgamma, T* dbeta);

}  // namespace xgrad
