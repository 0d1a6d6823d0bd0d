// How a contiguous run of values is summed or mapped: the one thing Code varies. A kernel writes
// its arithmetic once, as a generic term of a loader `at`, and Plain or Xsimd calls it with
// scalars or with batches:
//   sums<Acc, K>(len, term)  the K sums over i in [0, len) of term(at) -> std::array<V, K>, where
//                            at(p) is p[i] converted to Acc (V = Acc), or the batch of
//                            xsimd::batch<Acc> starting at p + i (V = that batch);
//   map(out, len, f)         out[i] = f(at), at(p) being p[i] (or the batch at p + i) in T;
//   welford<Acc>(p, len)     the Welford statistics of p[0, len).
// Both sum in independent lanes, so that the compiler need not reassociate a sum to vectorize it.
#pragma once

#include <array>
#include <cstddef>
#include <type_traits>

#include <xsimd/xsimd.hpp>

#include "bench/variants/welford.hpp"

namespace bn_variants::detail {

// a·b + c: for scalars a product and a sum, as written (the library is built with
// -ffp-contract=off); for batches one explicit FMA, the scalar operands broadcast.
template <class V>
    requires std::is_arithmetic_v<V>
V mul_add(V a, V b, V c) {
    return a * b + c;
}

template <class U, class A, class B, class C>
xsimd::batch<U, A> mul_add(const xsimd::batch<U, A>& a, const B& b, const C& c) {
    using Batch = xsimd::batch<U, A>;
    return xsimd::fma(a, Batch(b), Batch(c));
}

// Plain loops over kLanes scalar lanes: element i goes to lane i % kLanes.
struct Plain {
    static constexpr std::size_t kLanes = 16;

    template <class Acc, std::size_t K, class Term>
    static std::array<Acc, K> sums(std::size_t len, const Term& term) {
        Acc acc[K][kLanes] = {};
        const auto add = [&](std::size_t i, std::size_t lane) {
            const std::array<Acc, K> t = term([i](const auto* p) { return static_cast<Acc>(p[i]); });
            for (std::size_t k = 0; k < K; ++k) acc[k][lane] += t[k];
        };
        std::size_t i = 0;
        for (; i + kLanes <= len; i += kLanes) {
            // Kept a loop, which GCC vectorizes across the lanes. Unrolled, GCC 12 vectorizes
            // the outer loop instead, through 16x16 transposes: 5x slower for float and two sums.
#pragma GCC unroll 1
            for (std::size_t l = 0; l < kLanes; ++l) add(i + l, l);
        }
        for (std::size_t l = 0; i + l < len; ++l) add(i + l, l);
        std::array<Acc, K> out;
        for (std::size_t k = 0; k < K; ++k) {
            for (std::size_t w = kLanes / 2; w > 0; w /= 2) {
                for (std::size_t l = 0; l < w; ++l) acc[k][l] += acc[k][l + w];
            }
            out[k] = acc[k][0];
        }
        return out;
    }

    template <class T, class F>
    static void map(T* out, std::size_t len, const F& f) {
        for (std::size_t i = 0; i < len; ++i) out[i] = f([i](const T* p) { return p[i]; });
    }

    template <class Acc, class T>
    static Welford<Acc> welford(const T* p, std::size_t len) {
        Acc mean[kLanes] = {}, m2[kLanes] = {};
        std::size_t i = 0, count = 0;
        for (; i + kLanes <= len; i += kLanes) {
            ++count;
            const Acc n = static_cast<Acc>(count);
            for (std::size_t l = 0; l < kLanes; ++l) {
                const Acc x = static_cast<Acc>(p[i + l]);
                const Acc d = x - mean[l];
                mean[l] += d / n;
                m2[l] += d * (x - mean[l]);
            }
        }
        Welford<Acc> s = merge_lanes(count, mean, m2, kLanes);
        for (; i < len; ++i) s.push(static_cast<Acc>(p[i]));
        return s;
    }
};

// xsimd batches of the default arch (per the compiler's flags: SSE2 to AVX-512), kUnroll of them
// side by side so that consecutive adds do not wait for each other.
struct Xsimd {
    static constexpr std::size_t kUnroll = 4;

    template <class Acc, std::size_t K, class Term>
    static std::array<Acc, K> sums(std::size_t len, const Term& term) {
        using Batch = xsimd::batch<Acc>;
        constexpr std::size_t width = Batch::size;
        std::array<std::array<Batch, kUnroll>, K> acc;
        for (auto& a : acc) a.fill(Batch(Acc(0)));
        const auto add = [&](std::size_t i, std::size_t u) {
            const std::array<Batch, K> t = term([i](const auto* p) { return Batch::load_unaligned(p + i); });
            for (std::size_t k = 0; k < K; ++k) acc[k][u] += t[k];
        };
        std::size_t i = 0;
        for (; i + kUnroll * width <= len; i += kUnroll * width) {
            for (std::size_t u = 0; u < kUnroll; ++u) add(i + u * width, u);
        }
        for (; i + width <= len; i += width) add(i, 0);
        std::array<Acc, K> out;
        for (std::size_t k = 0; k < K; ++k) {
            Batch total = acc[k][0];
            for (std::size_t u = 1; u < kUnroll; ++u) total += acc[k][u];
            out[k] = xsimd::hadd(total);
        }
        for (; i < len; ++i) {
            const std::array<Acc, K> t = term([i](const auto* p) { return static_cast<Acc>(p[i]); });
            for (std::size_t k = 0; k < K; ++k) out[k] += t[k];
        }
        return out;
    }

    template <class T, class F>
    static void map(T* out, std::size_t len, const F& f) {
        using Batch = xsimd::batch<T>;
        std::size_t i = 0;
        for (; i + Batch::size <= len; i += Batch::size) {
            const Batch v = f([i](const T* p) { return Batch::load_unaligned(p + i); });
            v.store_unaligned(out + i);
        }
        for (; i < len; ++i) out[i] = f([i](const T* p) { return p[i]; });
    }

    template <class Acc, class T>
    static Welford<Acc> welford(const T* p, std::size_t len) {
        using Batch = xsimd::batch<Acc>;
        constexpr std::size_t width = Batch::size;
        std::array<Batch, kUnroll> mean, m2;
        mean.fill(Batch(Acc(0)));
        m2.fill(Batch(Acc(0)));
        std::array<std::size_t, kUnroll> count{};  // values each lane of batch u has seen
        const auto push = [&](std::size_t i, std::size_t u) {
            const Batch n(static_cast<Acc>(++count[u]));
            const Batch x = Batch::load_unaligned(p + i);
            const Batch d = x - mean[u];
            mean[u] += d / n;
            m2[u] = xsimd::fma(d, x - mean[u], m2[u]);
        };
        std::size_t i = 0;
        for (; i + kUnroll * width <= len; i += kUnroll * width) {
            for (std::size_t u = 0; u < kUnroll; ++u) push(i + u * width, u);
        }
        for (; i + width <= len; i += width) push(i, 0);
        Welford<Acc> s;
        for (std::size_t u = 0; u < kUnroll; ++u) {
            Acc lane_mean[width], lane_m2[width];
            mean[u].store_unaligned(lane_mean);
            m2[u].store_unaligned(lane_m2);
            s.merge(merge_lanes(count[u], lane_mean, lane_m2, width));
        }
        for (; i < len; ++i) s.push(static_cast<Acc>(p[i]));
        return s;
    }
};

}  // namespace bn_variants::detail
