// One sample's term of a convolution's weight gradient when its filters are short, of fewer than
// kShortFilterWeights weights (the seed CNN's conv1: 1 channel × 3 × 3 = 9): dW (out, rows) = or
// += gy (out, plane) · colsᵀ (plane, rows), as out × rows dot products of length plane, a filter's
// `rows` sums in vector registers (as many as the instruction set has) while its row of gy streams
// by once. OpenBLAS's sgemm runs a product this narrow at half the speed (bench/RESULTS.md). Each
// dot product adds its lanes in a fixed order, so the bits depend on the shapes alone.
#pragma once

#include <array>
#include <cstddef>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>

#include <xsimd/xsimd.hpp>

#include "autodiff/blas.hpp"

namespace xgrad {

inline constexpr std::size_t kShortFilterWeights = 16;

namespace short_filter_detail {

template <std::size_t Rows, class T>
void add_terms(const T* gy, const T* cols, std::size_t out, std::size_t plane, bool add, T* dw) {
    using Batch = xsimd::batch<T>;
    constexpr std::size_t lanes = Batch::size;
    const std::size_t vector_end = plane - plane % lanes;
    for (std::size_t o = 0; o < out; ++o) {
        const T* g = gy + o * plane;
        std::array<Batch, Rows> sums;
        sums.fill(Batch(T(0)));
        for (std::size_t p = 0; p < vector_end; p += lanes) {
            const Batch gv = Batch::load_unaligned(g + p);
            for (std::size_t r = 0; r < Rows; ++r) sums[r] = xsimd::fma(gv, Batch::load_unaligned(cols + r * plane + p), sums[r]);
        }
        for (std::size_t r = 0; r < Rows; ++r) {
            T sum = xsimd::hadd(sums[r]);
            for (std::size_t p = vector_end; p < plane; ++p) sum += g[p] * cols[r * plane + p];
            dw[o * Rows + r] = add ? dw[o * Rows + r] + sum : sum;
        }
    }
}

template <class T, std::size_t... Rows>
constexpr auto kernels(std::index_sequence<Rows...>) {
    return std::array{&add_terms<Rows + 1, T>...};
}

}  // namespace short_filter_detail

// dW (out, rows) += gy · colsᵀ if `add`, else dW = gy · colsᵀ; 0 < rows < kShortFilterWeights.
// Logged as the product gemm would have made (autodiff/blas.hpp): the GEMM floor counts its FLOPs.
template <class T>
void add_short_filter_terms(const T* gy, const T* cols, std::size_t out, std::size_t rows, std::size_t plane,
                            bool add, T* dw) {
    if (rows == 0 || rows >= kShortFilterWeights) {
        throw std::invalid_argument("add_short_filter_terms: filters of 1 to " + std::to_string(kShortFilterWeights - 1) +
                                    " weights, got " + std::to_string(rows));
    }
    if constexpr (std::is_same_v<T, float>) GemmCallLog::record({false, true, out, rows, plane, plane, plane, rows});
    static constexpr auto table = short_filter_detail::kernels<T>(std::make_index_sequence<kShortFilterWeights - 1>{});
    table[rows - 1](gy, cols, out, plane, add, dw);
}

}  // namespace xgrad
