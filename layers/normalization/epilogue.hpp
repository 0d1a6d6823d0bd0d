// Stage 3's epilogue: what follows the normalization's affine map in the same elementwise pass,
// chosen at compile time: nothing, a ReLU (BatchNormReLU), or FilterResponseNorm's TLU. The
// backward passes gate the output gradient by the epilogue's derivative, recomputing the
// epilogue's input v from x with the forward's coefficients when the derivative depends on it, so
// that the gradient between the normalization and its epilogue is never a tensor.
//
// An epilogue is bound to a run of the row view (bind_run, from for_each_run's per_element and
// first) or to a row (bind_row, for the backward sums' per-element terms), which gives an object
// with
//   forward(v, k)        the output for the normalized value v
//   gate(dy, v, k)       dy through the derivative at v
//   extras(dy, v, k)     extra_sums more per-row sums for the epilogue's own parameters' gradients
// where k is the element's index in the run (bind_run) or in the tensor (bind_row).
#pragma once

#include <array>
#include <cstddef>

#include "layers/normalization/arithmetic.hpp"
#include "layers/normalization/coefficients.hpp"

namespace xgrad {

struct NoEpilogue {
    static constexpr bool gate_reads_value = false;
    static constexpr std::size_t extra_sums = 0;
    struct Bound {
        template <class T>
        T forward(T v, std::size_t) const { return v; }
        template <class T>
        T gate(T dy, T, std::size_t) const { return dy; }
        template <class T>
        std::array<double, 0> extras(T, T, std::size_t) const { return {}; }
    };
    template <class PerElement>
    Bound bind_run(PerElement, std::size_t) const { return {}; }
    Bound bind_row(std::size_t) const { return {}; }
};

// max(0, v) as the graph's ReLU computes it: NaN and -0 give +0; its gradient is dy where v > 0.
struct ReluEpilogue {
    static constexpr bool gate_reads_value = true;
    static constexpr std::size_t extra_sums = 0;
    struct Bound {
        template <class T>
        T forward(T v, std::size_t) const { return v > T(0) ? v : T(0); }
        template <class T>
        T gate(T dy, T v, std::size_t) const { return normalization_detail::keep_if(dy, v > T(0)); }
        template <class T>
        std::array<double, 0> extras(T, T, std::size_t) const { return {}; }
    };
    template <class PerElement>
    Bound bind_run(PerElement, std::size_t) const { return {}; }
    Bound bind_row(std::size_t) const { return {}; }
};

// FilterResponseNorm's thresholded linear unit, z = max(v, tau) with tau per channel (a NaN v stays
// NaN, as torch.max does). The gradient goes to v where v >= tau (a tie counts as v's) and to tau
// elsewhere: extras = {Σ dy where v < tau}, tau's gradient of the row.
template <class T>
class TluEpilogue {
public:
    static constexpr bool gate_reads_value = true;
    static constexpr std::size_t extra_sums = 1;

    // tau has one value per channel of the grouping's rows.
    TluEpilogue(const ChannelShape& row_view, std::size_t channels, const T* tau) : tau_(row_view) {
        for (std::size_t row = 0; row < row_view.c; ++row) tau_.set(row, static_cast<double>(tau[row % channels]));
    }

    // Element k's tau at tau[k·Step]: a step known at compile time, so that a row's one tau is
    // held in a register rather than loaded per element (elementwise_affine.hpp's Bound).
    template <std::size_t Step>
    struct Bound {
        const T* tau;
        T forward(T v, std::size_t k) const {
            const T t = tau[k * Step];
            return v < t ? t : v;
        }
        T gate(T dy, T v, std::size_t k) const { return normalization_detail::keep_if(dy, !(v < tau[k * Step])); }
        std::array<double, 1> extras(T dy, T v, std::size_t k) const {
            return {static_cast<double>(normalization_detail::keep_if(dy, v < tau[k * Step]))};
        }
    };
    template <class PerElement>
    Bound<PerElement::value ? 1 : 0> bind_run(PerElement, std::size_t first) const {
        return {tau_.from(first)};
    }
    Bound<0> bind_row(std::size_t row) const { return {tau_.of_row(row)}; }

private:
    RowCoefficients<T> tau_;
};

}  // namespace xgrad
