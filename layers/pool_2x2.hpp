// 2×2 windows at stride 2, the seed CNN's pooling: a row of windows' maxima and arg-maxes, as
// torch.nn.MaxPool2d(2) takes them (the first of equal maxima in row-major order; a NaN is a
// window's maximum). Shared by MaxPool2d and the fused BatchNormReLUMaxPool2d
// (normalized_max_pool.hpp), so that the two pool alike.
#pragma once

#include <bit>
#include <cstddef>
#include <cstdint>
#include <type_traits>

namespace xgrad::pool_detail {

// `a` where `take`, else `b`: by masks rather than a branch, which on real data is a coin toss that
// a branch would mispredict half the time (and which GCC emits even for a ?: in a loop's scalar
// remainder).
template <class T>
T select_bits(bool take, T a, T b) {
    using Bits = std::conditional_t<sizeof(T) == 4, std::uint32_t, std::uint64_t>;
    static_assert(sizeof(Bits) == sizeof(T));
    const Bits mask = Bits{0} - static_cast<Bits>(take);
    return std::bit_cast<T>((std::bit_cast<Bits>(a) & mask) | (std::bit_cast<Bits>(b) & ~mask));
}

// Outputs [0, n) of a row of 2×2 windows at stride 2: each output's four candidates, in rows
// `top` and top + w of the plane (whose first element has index `at`), taken in row-major order,
// each replacing the best so far if greater or a NaN, as in torch. With Carry, the element at the
// arg-max's place in another plane laid out alike (`carried_top` at `top`'s place) goes to
// carried[k] too (the fused layer's x, which its backward sums read). A Count known at compile
// time (std::integral_constant) makes the loop vector code whether or not GCC inlines the call.
template <bool Carry, class T, class Count>
void pool_2x2(const T* __restrict top, std::size_t w, std::uint32_t at, Count n, T* __restrict best,
              std::uint32_t* __restrict where, const T* __restrict carried_top, T* __restrict carried) {
    const T* bottom = top + w;
    const auto row = static_cast<std::uint32_t>(w);
    for (std::size_t k = 0; k < n; ++k) {
        const auto left = static_cast<std::uint32_t>(at + 2 * k);
        T b = top[2 * k];
        std::uint32_t i = left;
        T kept{};
        if constexpr (Carry) kept = carried_top[2 * k];
        const T candidates[3] = {top[2 * k + 1], bottom[2 * k], bottom[2 * k + 1]};
        const std::uint32_t at_candidate[3] = {left + 1, left + row, left + row + 1};
        for (int c = 0; c < 3; ++c) {
            const T v = candidates[c];
            const bool take = (v > b) | (v != v);
            b = select_bits(take, v, b);
            i = select_bits(take, at_candidate[c], i);
            if constexpr (Carry) {
                const std::size_t offset[3] = {2 * k + 1, w + 2 * k, w + 2 * k + 1};
                kept = select_bits(take, carried_top[offset[c]], kept);
            }
        }
        best[k] = b;
        where[k] = i;
        if constexpr (Carry) carried[k] = kept;
    }
}

// One row of `ow` outputs of 2×2 windows at stride 2 (the seed CNN's pooling), Lanes outputs at a
// time: a loop of this fixed length is one or two vector operations per step, where a loop over
// the seed CNN's rows (7 and 14 outputs) alone would be shorter than its first vector iteration
// and run as scalar code, six times slower. A part shorter than Lanes is still computed Lanes
// wide where `readable` inputs from `top` (and from `carried_top`) allow reading past the row into
// the input that follows it, else as it is; written past the row into the outputs of the plane's
// following rows (best, where and carried; their calls then overwrite them) if `writable` outputs
// allow, else through a buffer (a plane's last row).
template <std::size_t Lanes, bool Carry, class T>
[[gnu::always_inline]] inline void pool_2x2_row(const T* top, std::size_t w, std::uint32_t at, std::size_t ow,
                                                std::size_t readable, std::size_t writable, T* best, std::uint32_t* where,
                                                const T* carried_top, T* carried) {
    constexpr std::integral_constant<std::size_t, Lanes> lanes;
    const auto carried_at = [&](std::size_t k) { return Carry ? carried + k : nullptr; };
    const auto carried_from = [&](std::size_t k) { return Carry ? carried_top + 2 * k : nullptr; };
    std::size_t k = 0;
    for (; k + Lanes <= ow; k += Lanes) {
        const std::uint32_t at_k = at + static_cast<std::uint32_t>(2 * k);
        pool_2x2<Carry>(top + 2 * k, w, at_k, lanes, best + k, where + k, carried_from(k), carried_at(k));
    }
    if (k == ow) return;
    const std::uint32_t rest_at = at + static_cast<std::uint32_t>(2 * k);
    if (w + 2 * (k + Lanes) > readable) {
        pool_2x2<Carry>(top + 2 * k, w, rest_at, ow - k, best + k, where + k, carried_from(k), carried_at(k));
    } else if (k + Lanes <= writable) {
        pool_2x2<Carry>(top + 2 * k, w, rest_at, lanes, best + k, where + k, carried_from(k), carried_at(k));
    } else {
        T b[Lanes], kept[Lanes];
        std::uint32_t i[Lanes];
        pool_2x2<Carry>(top + 2 * k, w, rest_at, lanes, b, i, carried_from(k), kept);
        // A fixed-length loop of masked stores, not a call to memmove for a few elements.
        for (std::size_t j = 0; j < Lanes; ++j) {
            if (k + j < ow) {
                best[k + j] = b[j];
                where[k + j] = i[j];
                if constexpr (Carry) carried[k + j] = kept[j];
            }
        }
    }
}

// The most windows pool_2x2_plane takes at a time.
inline constexpr std::size_t kWidestRow = 16;

// Every window of a plane of `w` columns: its oh × ow maxima into best and their indices in the
// plane into where (and with Carry, carried_src's elements there into carried). `readable` inputs
// from src (and from carried_src) may be read: at least to the plane's last window. Inlined, as
// pool_2x2_row: a call per row costs MaxPool2d's forward a tenth at the seed CNN's 7-window rows.
template <bool Carry = false, class T>
[[gnu::always_inline]] inline void pool_2x2_plane(const T* src, std::size_t w, std::size_t oh, std::size_t ow,
                                                  std::size_t readable, T* best, std::uint32_t* where,
                                                  const T* carried_src = nullptr, T* carried = nullptr) {
    for (std::size_t r = 0; r < oh; ++r) {
        const std::size_t top = 2 * r * w;
        const std::size_t writable = (oh - r) * ow;  // to the end of the plane's outputs
        const auto at = static_cast<std::uint32_t>(top);
        const T* carried_top = Carry ? carried_src + top : nullptr;
        T* carried_row = Carry ? carried + r * ow : nullptr;
        if (ow <= 8) {
            pool_2x2_row<8, Carry>(src + top, w, at, ow, readable - top, writable, best + r * ow, where + r * ow,
                                   carried_top, carried_row);
        } else {
            pool_2x2_row<kWidestRow, Carry>(src + top, w, at, ow, readable - top, writable, best + r * ow,
                                            where + r * ow, carried_top, carried_row);
        }
    }
}

}  // namespace xgrad::pool_detail
