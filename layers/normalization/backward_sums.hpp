// Stage 4's reduction: per row of the row view (grouping.hpp), the sums the backward folds into the
// parameter gradients and the input gradient's coefficients (fold_backward):
//   {Σg, Σg·(x - mean_g), the epilogue's extra sums}
// g = dy through the epilogue's derivative, mean_g the mean the row's group was normalized with. In
// double, by the per-channel reduction over the row view: bits independent of the thread count.
// Separate from the elementwise pass so that a cross-process all-reduce can sit between them.
#pragma once

#include <array>
#include <cstddef>
#include <span>
#include <vector>

#include "layers/normalization/arithmetic.hpp"
#include "layers/normalization/coefficients.hpp"
#include "layers/normalization/fold.hpp"

namespace xgrad {

template <class Epilogue>
using RowSums = std::array<double, 2 + Epilogue::extra_sums>;

// `forward` as in apply_backward; `row_mean` has the mean of each row's group, one per row.
template <class T, class Epilogue>
void backward_sums(const ChannelShape& view, std::span<const double> row_mean, const Affine<T>* forward,
                   const Epilogue& epilogue, const T* dy, const T* x, const Rows& rows,
                   std::span<RowSums<Epilogue>> out) {
    using namespace normalization_detail;
    constexpr std::size_t K = 2 + Epilogue::extra_sums;
    const double* mean = row_mean.data();
    const auto term = [&](std::size_t row, std::size_t i) {
        const auto epi = epilogue.bind_row(row);
        T v{};
        if constexpr (Epilogue::gate_reads_value) {
            v = affine(x[i], forward->centre.at(row), forward->scale.at(row), forward->shift.at(row));
        }
        const double g = static_cast<double>(epi.gate(dy[i], v, i));
        Products<K> s{{g, g}, {1.0, static_cast<double>(x[i]) - mean[row]}};
        const auto extras = epi.extras(dy[i], v, i);
        for (std::size_t e = 0; e < extras.size(); ++e) {
            s.value[2 + e] = extras[e];
            s.factor[2 + e] = 1.0;
        }
        return s;
    };
    channel_sums_over<K>(view, rows, read_ahead(term, view.size(), dy, x), [out](std::size_t row, const std::array<double, K>& s) { out[row] = s; });
}

}  // namespace xgrad
