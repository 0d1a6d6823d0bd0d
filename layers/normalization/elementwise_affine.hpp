// LayerNorm's elementwise affine map, y = gamma_j·v + beta_j with j an element's position in its
// row: an epilogue (epilogue.hpp) over a row view whose rows are the normalized slices, and the
// column reduction for its parameters' gradients. The statistics and the per-row coefficients are
// those of any per-sample grouping with one group per row (Grouping::per_sample over an
// (N_lead, 1, M) view), so LayerNorm's gamma and beta, which vary along the row, ride in the
// elementwise pass rather than in the per-row coefficients (one value per row there).
//
// Their gradients are sums over rows, not within one: dgamma_j = Σ_n dy·x̂ and dbeta_j = Σ_n dy,
// the per-channel reduction over the (N_lead, M, 1) view, whose channels are the columns; so they
// cannot be the epilogue's per-row extra sums.
#pragma once

#include <array>
#include <cstddef>
#include <vector>

#include "layers/normalization/arithmetic.hpp"
#include "layers/normalization/fold.hpp"

namespace xgrad {

template <class T>
class ElementwiseAffineEpilogue {
public:
    static constexpr bool gate_reads_value = false;
    static constexpr std::size_t extra_sums = 0;

    // gamma and beta have `columns` values each (a row's length); copied, so that a backward
    // multiplies by the gamma its forward used.
    ElementwiseAffineEpilogue(const T* gamma, const T* beta, std::size_t columns)
        : gamma_(gamma, gamma + columns), beta_(beta, beta + columns) {}

    // Element k of the bound run or row is in column (k - origin)·step.
    struct Bound {
        const T* gamma;
        const T* beta;
        std::size_t origin;
        std::size_t step;
        T forward(T v, std::size_t k) const {
            return normalization_detail::mul_add(v, gamma[(k - origin) * step], beta[(k - origin) * step]);
        }
        T gate(T dy, T, std::size_t k) const { return dy * gamma[(k - origin) * step]; }
        std::array<double, 0> extras(T, T, std::size_t) const { return {}; }
    };
    // k is the position in the run: a whole row, or, where the rows of the per-sample view
    // (1, rows, M) merge (runs.hpp: only at M = 1), rows of one column each.
    template <class PerElement>
    Bound bind_run(PerElement, std::size_t) const {
        return {gamma_.data(), beta_.data(), 0, PerElement::value ? 0u : 1u};
    }
    // k is the element's index in the tensor.
    Bound bind_row(std::size_t row) const { return {gamma_.data(), beta_.data(), row * gamma_.size(), 1}; }

private:
    std::vector<T> gamma_;
    std::vector<T> beta_;
};

// dgamma_j = Σ_n dy·(x - mean_n)·invstd_n and dbeta_j = Σ_n dy over the rows n of an (rows, columns)
// tensor whose row n was normalized with norm.mean[n] and norm.invstd[n]; in double, by the
// per-channel reduction (bits independent of the thread count). dgamma or dbeta null: not wanted.
template <class T>
void elementwise_affine_backward(std::size_t rows, std::size_t columns, const Normalization& norm, const T* dy,
                                 const T* x, T* dgamma, T* dbeta);

}  // namespace xgrad
