#include "layers/normalized_max_pool.hpp"

#include <algorithm>
#include <bit>
#include <cstdint>
#include <type_traits>
#include <limits>

#include <tbb/blocked_range.h>
#include <tbb/parallel_for.h>

#include "layers/normalization/arithmetic.hpp"
#include "layers/normalization/epilogue.hpp"
#include "layers/pool_2x2.hpp"

namespace xgrad {

namespace {

using normalization_detail::affine;
using normalization_detail::keep_if;
using normalization_detail::mul_add;

// The backward sums' partial sums per group of consecutive samples, at most this many groups:
// enough for two threads to share, few enough that adding them up costs nothing.
constexpr std::size_t kSampleGroups = 16;
// Each partial sum is kept in this many lanes (window k of a plane in lane k % kLanes), which
// lets the compiler vectorize the sum without reassociating it.
constexpr std::size_t kLanes = 8;

// 1 for an infinity or a NaN (all exponent bits set), else 0: integer operations, which vectorize
// in the loop that counts them, where a floating-point test would not.
template <class T>
std::uint32_t is_nonfinite(T v) {
    using Bits = std::conditional_t<sizeof(T) == 4, std::uint32_t, std::uint64_t>;
    constexpr Bits exponent = std::bit_cast<Bits>(std::numeric_limits<T>::infinity());
    return static_cast<std::uint32_t>((std::bit_cast<Bits>(v) & exponent) == exponent);
}

// A plane's worth of z or of its gradient: a buffer each task keeps, zeros past the plane so that
// the plane's last windows are read as wide as the others (pool_2x2_row: at most 2·kWidestRow past
// the last window's top row).
template <class T>
class PlaneBuffer {
public:
    explicit PlaneBuffer(const WindowGeometry& g) : g_(g), values_(g.in_plane() + 2 * pool_detail::kWidestRow) {}

    // Plane p (channel p % C) of x: z with a's coefficients, then its windows' maxima into y and
    // what the backward needs into out.
    void pool(const Affine<T>& a, const T* x, std::size_t p, T* y, const PooledArgMax<T>& out) {
        const std::size_t c = p % g_.c;
        const T centre = a.centre.at(c), scale = a.scale.at(c), shift = a.shift.at(c);
        const T* src = x + p * g_.in_plane();
        // Past the plane, z's zeros and x's next planes (none after the last).
        const std::size_t readable = std::min(values_.size(), (g_.n * g_.c - p) * g_.in_plane());
        const std::size_t first = p * g_.out_plane();
        T* x_at_max = out.x + first;
        const bool counted = out.nonfinite_elsewhere != nullptr;  // a count costs the pass a tenth
        std::uint32_t nonfinite =
            counted ? normalize<true>(src, centre, scale, shift) : normalize<false>(src, centre, scale, shift);
        pool_detail::pool_2x2_plane<true>(z(), g_.w, g_.oh, g_.ow, readable, y + first, out.index + first, src,
                                          x_at_max);
        if (!counted) return;
        for (std::size_t k = 0; k < g_.out_plane(); ++k) nonfinite -= is_nonfinite(x_at_max[k]);
        out.nonfinite_elsewhere[p] = nonfinite > 0;
    }

    // Plane p's gradient at the ReLU's output: each window's at its arg-max where the window's
    // maximum is positive (the ReLU's mask there), 0 elsewhere (each input is the arg-max of one
    // window at most).
    const T* gradient(const T* y, const std::uint32_t* argmax, const T* gy, std::size_t p) {
        T* __restrict gz = values_.data();
        std::fill_n(gz, g_.in_plane(), T(0));
        const std::size_t first = p * g_.out_plane();
        for (std::size_t k = first; k < first + g_.out_plane(); ++k) gz[argmax[k]] = keep_if(gy[k], y[k] > T(0));
        return gz;
    }

private:
    T* z() { return values_.data(); }

    // z of a plane of x into the buffer; with Count, returns how many of x are non-finite.
    template <bool Count>
    std::uint32_t normalize(const T* __restrict src, T centre, T scale, T shift) {
        T* __restrict out = z();
        const ReluEpilogue::Bound relu{};
        std::uint32_t nonfinite = 0;
        for (std::size_t i = 0; i < g_.in_plane(); ++i) {
            out[i] = relu.forward(affine(src[i], centre, scale, shift), i);
            if constexpr (Count) nonfinite += is_nonfinite(src[i]);
        }
        return nonfinite;
    }

    const WindowGeometry& g_;
    std::vector<T> values_;
};

// Calls f(buffer, p) for every plane p, in parallel, each task with its own PlaneBuffer.
template <class T, class F>
void for_each_plane(const WindowGeometry& g, const F& f) {
    tbb::parallel_for(tbb::blocked_range<std::size_t>(0, g.n * g.c), [&](const tbb::blocked_range<std::size_t>& r) {
        PlaneBuffer<T> buffer(g);
        for (std::size_t p = r.begin(); p < r.end(); ++p) f(buffer, p);
    });
}

struct LaneSums {
    std::array<double, kLanes> g{};
    std::array<double, kLanes> gx{};
};

// Windows [0, count) (count <= kLanes) into lanes 0, 1, ...: {Σg, Σg·(x - m)}, g the window's
// gradient where its maximum is positive, x at its arg-max.
template <class T>
void add_to_lanes(const T* __restrict y, const T* __restrict x_at_max, const T* __restrict gy, double m,
                  std::size_t count, LaneSums& s) {
    for (std::size_t l = 0; l < count; ++l) {
        const double g = static_cast<double>(keep_if(gy[l], y[l] > T(0)));
        s.g[l] += g;
        s.gx[l] += g * (static_cast<double>(x_at_max[l]) - m);
    }
}

}  // namespace

template <class T>
void relu_max_pool_forward(const WindowGeometry& g, const Affine<T>& a, const T* x, T* y, const PooledArgMax<T>& out,
                           const Rows& channels) {
    const auto pool = [&](PlaneBuffer<T>& buffer, std::size_t p) { buffer.pool(a, x, p, y, out); };
    if (channels.whole) {
        for_each_plane<T>(g, pool);
        return;
    }
    PlaneBuffer<T> buffer(g);
    for (std::size_t n = 0; n < g.n; ++n) {
        for (std::size_t c = channels.begin; c < channels.end; ++c) pool(buffer, n * g.c + c);
    }
}

template <class T>
std::vector<std::array<double, 2>> relu_max_pool_backward_sums(const WindowGeometry& g, const std::vector<double>& mean,
                                                                const T* y, const PooledArgMax<T>& at_max, const T* gy) {
    const std::size_t groups = std::min(g.n, kSampleGroups);
    const auto first_sample = [&](std::size_t k) { return g.n * k / groups; };
    const std::size_t size = g.out_plane();
    std::vector<LaneSums> partials(groups * g.c);
    tbb::parallel_for(std::size_t{0}, groups, [&](std::size_t k) {
        for (std::size_t n = first_sample(k); n < first_sample(k + 1); ++n) {
            for (std::size_t c = 0; c < g.c; ++c) {
                const std::size_t first = (n * g.c + c) * size;
                const T* yp = y + first;
                const T* xp = at_max.x + first;
                const T* gp = gy + first;
                // The lanes in locals across the plane: in memory, each addition would wait on a store.
                LaneSums s = partials[k * g.c + c];
                std::size_t i = 0;
                for (; i + kLanes <= size; i += kLanes) add_to_lanes(yp + i, xp + i, gp + i, mean[c], kLanes, s);
                add_to_lanes(yp + i, xp + i, gp + i, mean[c], size - i, s);
                if (at_max.nonfinite_elsewhere && at_max.nonfinite_elsewhere[n * g.c + c]) {
                    s.gx[0] += std::numeric_limits<double>::quiet_NaN();
                }
                partials[k * g.c + c] = s;
            }
        }
    });
    // Each group's lanes in order, then the groups in order.
    std::vector<std::array<double, 2>> sums(g.c, {0.0, 0.0});
    for (std::size_t k = 0; k < groups; ++k) {
        for (std::size_t c = 0; c < g.c; ++c) {
            const LaneSums& s = partials[k * g.c + c];
            double sg = 0.0, sgx = 0.0;
            for (std::size_t l = 0; l < kLanes; ++l) {
                sg += s.g[l];
                sgx += s.gx[l];
            }
            sums[c][0] += sg;
            sums[c][1] += sgx;
        }
    }
    return sums;
}

template <class T>
void relu_max_pool_backward(const WindowGeometry& g, const InputGrad<T>& d, const T* y, const PooledArgMax<T>& at_max,
                            const T* gy, const T* x, T* dx) {
    for_each_plane<T>(g, [&](PlaneBuffer<T>& buffer, std::size_t p) {
        const T* __restrict gz = buffer.gradient(y, at_max.index, gy, p);
        const std::size_t c = p % g.c;
        const T al = d.alpha.at(c), ce = d.centre.at(c), k = d.k.at(c), sf = d.shift.at(c);
        const T* __restrict src = x + p * g.in_plane();
        T* __restrict out = dx + p * g.in_plane();
        if (d.x_term) {
            for (std::size_t i = 0; i < g.in_plane(); ++i) out[i] = mul_add(gz[i], al, affine(src[i], ce, k, sf));
        } else {
            for (std::size_t i = 0; i < g.in_plane(); ++i) out[i] = affine(gz[i], T(0), al, T(0));
        }
    });
}

#define XGRAD_NORMALIZED_MAX_POOL(T)                                                                                      \
    template void relu_max_pool_forward(const WindowGeometry&, const Affine<T>&, const T*, T*, const PooledArgMax<T>&,   \
                                        const Rows&);                                                                     \
    template std::vector<std::array<double, 2>> relu_max_pool_backward_sums(                                              \
        const WindowGeometry&, const std::vector<double>&, const T*, const PooledArgMax<T>&, const T*);                    \
    template void relu_max_pool_backward(const WindowGeometry&, const InputGrad<T>&, const T*, const PooledArgMax<T>&,   \
                                         const T*, const T*, T*);
XGRAD_NORMALIZED_MAX_POOL(float)
XGRAD_NORMALIZED_MAX_POOL(double)
#undef XGRAD_NORMALIZED_MAX_POOL

}  // namespace xgrad
