// The per-row coefficients that stage 2 (fold.hpp) computes in double from the statistics and the
// parameters, stored in T, so that the elementwise passes (elementwise.hpp) are one multiply-add
// chain per element:
//   forward   y  = (x - centre)·scale + shift                      (Affine)
//   backward  dx = g·alpha + ((x - centre)·k + shift)               (InputGrad)
// centre is the group's mean rounded to T: x - centre is exact for x near the mean (Sterbenz), so
// data with a large mean and a small spread (1e4 + N(0, 1e-2) in float) keep their precision, where
// torch's fold x·alpha + (beta - mean·alpha) adds two large rounded terms.
#pragma once

#include <algorithm>
#include <array>
#include <cstddef>
#include <vector>

#include "layers/normalization/runs.hpp"

namespace xgrad {

// One value per row of a row view, laid out as for_each_run reads it: by row, or, where rows merge,
// by (row, s) position in a sample (the row's value repeated S times).
template <class T>
class RowCoefficients {
public:
    explicit RowCoefficients(const ChannelShape& view)
        : repeat_(normalization_detail::merges_rows(view) ? view.s : 1), values_(view.c * repeat_) {}
    void set(std::size_t row, double value) {
        if (repeat_ == 1) {  // a plain store: fill_n of a run-time count costs more than the fold's arithmetic
            values_[row] = static_cast<T>(value);
            return;
        }
        std::fill_n(values_.begin() + static_cast<std::ptrdiff_t>(row * repeat_), repeat_, static_cast<T>(value));
    }
    // The values as one per row, where that is the layout (null otherwise): for a loop that writes
    // many rows with plain stores.
    T* one_per_row() { return repeat_ == 1 ? values_.data() : nullptr; }
    // The run's coefficients, from for_each_run's `first`.
    const T* from(std::size_t first) const { return values_.data() + first; }
    T at(std::size_t row) const { return values_[row * repeat_]; }
    // The row's value, where every element of the row reads it.
    const T* of_row(std::size_t row) const { return values_.data() + row * repeat_; }

private:
    std::size_t repeat_;
    std::vector<T> values_;
};

// One run's affine coefficients (Affine::from): element i's at i·step, step 1 where they vary
// along the run and 0 where the run is one row's.
template <class T>
struct AffineRun {
    const T* centre = nullptr;
    const T* scale = nullptr;
    const T* shift = nullptr;
    std::array<T, 3> at(std::size_t j) const { return {centre[j], scale[j], shift[j]}; }
};

// y = (x - centre)·scale + shift, then the epilogue.
template <class T>
struct Affine {
    RowCoefficients<T> centre, scale, shift;
    explicit Affine(const ChannelShape& view) : centre(view), scale(view), shift(view) {}
    // The run's coefficients, from for_each_run's `first`.
    AffineRun<T> from(std::size_t first) const { return {centre.from(first), scale.from(first), shift.from(first)}; }
};

// dx = g·alpha + ((x - centre)·k + shift), g the output gradient through the epilogue's derivative.
// With x_term false (statistics taken as constants: eval), dx = g·alpha, and x is not read for it.
template <class T>
struct InputGrad {
    RowCoefficients<T> alpha, centre, k, shift;
    bool x_term = true;
    explicit InputGrad(const ChannelShape& view) : alpha(view), centre(view), k(view), shift(view) {}
};

}  // namespace xgrad
