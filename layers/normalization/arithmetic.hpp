// The scalar arithmetic every elementwise pass of the normalization stages shares, so that a value
// recomputed in a backward pass (a ReLU's mask) is the forward's bit for bit.
#pragma once

#include <bit>
#include <cmath>
#include <cstdint>
#include <type_traits>

namespace xgrad::normalization_detail {

// a·b + c in one rounding where the target has a fast FMA; elsewhere std::fma would be a slow
// library call that also stops vectorization.
template <class T>
T mul_add(T a, T b, T c) {
#if defined(FP_FAST_FMA) && defined(FP_FAST_FMAF)
    return std::fma(a, b, c);
#else
    return a * b + c;
#endif
}

// (x - centre)·scale + shift: the forward's normalization.
template <class T>
T affine(T x, T centre, T scale, T shift) {
    return mul_add(x - centre, scale, shift);
}

// dy where mask is true and +0 elsewhere, as a bit mask: GCC compiles `v > 0 ? dy : 0` in a sum's
// loop to a branch, which random signs mispredict and which stops vectorization.
template <class T>
T keep_if(T dy, bool mask) {
    using Bits = std::conditional_t<sizeof(T) == 4, std::uint32_t, std::uint64_t>;
    const Bits keep = Bits(0) - static_cast<Bits>(mask);
    return std::bit_cast<T>(std::bit_cast<Bits>(dy) & keep);
}

}  // namespace xgrad::normalization_detail
