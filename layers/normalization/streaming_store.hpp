// An elementwise pass's output written past the caches when it is larger than they are
// (past_the_caches, channel_reduce.hpp). Such an output is evicted before anything reads it again,
// and a plain store first reads each of its lines from memory (to own the line) and then writes it
// back: a third stream of traffic beside reading the input and writing the output. A streaming
// (non-temporal) store writes the line without reading it, as memmove does for large copies (the
// copy floor of the benchmarks).
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <type_traits>

#if defined(__SSE2__)
#include <immintrin.h>
#endif

namespace xgrad::normalization_detail {

// The width of this build's streaming stores in bytes; 0 without them.
#if defined(__AVX512F__)
inline constexpr std::size_t kStreamBytes = 64;
#elif defined(__AVX__)
inline constexpr std::size_t kStreamBytes = 32;
#elif defined(__SSE2__)
inline constexpr std::size_t kStreamBytes = 16;
#else
inline constexpr std::size_t kStreamBytes = 0;
#endif

// Whether this build writes with streaming stores; without them a streamed pass would only copy
// through a buffer.
inline constexpr bool kStreamingStores = kStreamBytes != 0;

// Streaming stores are not ordered with later stores: a thread that streamed must fence before
// whoever waits for its task may read what it wrote. Once per block of the cache-blocked walk (or
// per task of LayerNorm's column passes), not per run: the fence drains the core's write-combining
// buffers.
inline void stream_fence() {
#if defined(__SSE2__)
    _mm_sfence();
#endif
}

// dst[0, n) = src[0, n) by streaming stores where the target has them (plain stores up to the first
// aligned vector and after the last whole one); stream_fence() before the task ends.
template <class T>
void stream_copy(T* dst, const T* src, std::size_t n) {
    static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>);
    if constexpr (!kStreamingStores) {
        std::copy(src, src + n, dst);
    } else {
        constexpr std::size_t width = kStreamBytes / sizeof(T);
        std::size_t i = 0;
        for (; i < n && reinterpret_cast<std::uintptr_t>(dst + i) % kStreamBytes != 0; ++i) dst[i] = src[i];
        for (; i + width <= n; i += width) {
#if defined(__AVX512F__)
            if constexpr (std::is_same_v<T, float>) {
                _mm512_stream_ps(dst + i, _mm512_loadu_ps(src + i));
            } else {
                _mm512_stream_pd(dst + i, _mm512_loadu_pd(src + i));
            }
#elif defined(__AVX__)
            if constexpr (std::is_same_v<T, float>) {
                _mm256_stream_ps(dst + i, _mm256_loadu_ps(src + i));
            } else {
                _mm256_stream_pd(dst + i, _mm256_loadu_pd(src + i));
            }
#elif defined(__SSE2__)
            if constexpr (std::is_same_v<T, float>) {
                _mm_stream_ps(dst + i, _mm_loadu_ps(src + i));
            } else {
                _mm_stream_pd(dst + i, _mm_loadu_pd(src + i));
            }
#endif
        }
        for (; i < n; ++i) dst[i] = src[i];
    }
}

// Elements a streamed run is computed in before it is written: a buffer that stays in L1.
inline constexpr std::size_t kStreamChunk = 512;

// dst[i] = value(i) for i in [0, len), computed chunk by chunk into a buffer, each chunk then
// streamed to dst; stream_fence() before the task ends.
template <class T, class Value>
void stream_run(T* dst, std::size_t len, const Value& value) {
    alignas(64) T chunk[kStreamChunk];
    for (std::size_t first = 0; first < len; first += kStreamChunk) {
        const std::size_t count = std::min(kStreamChunk, len - first);
        for (std::size_t k = 0; k < count; ++k) chunk[k] = value(first + k);
        stream_copy(dst + first, chunk, count);
    }
}

// dst[r·stride + i] = element(i)(r) for the R runs r in [0, R) and i in [0, len): streamed
// (stream_run), or by plain stores, where element(i) reads what the runs' i-th elements share (their
// coefficients) once, into the callable of r it returns, before any of them is stored. dst may be
// an input that each value reads at its own position only; it must not overlap one elsewhere.
template <std::size_t R, class T, class Element>
void write_runs(T* dst, std::size_t stride, std::size_t len, bool streamed, const Element& element) {
    // One run at a time: several runs come only where rows merge (S < 16), which the cache-blocked
    // walk, the only one that streams, never takes.
    if (streamed) {
        for (std::size_t r = 0; r < R; ++r) stream_run(dst + r * stride, len, [&](std::size_t i) { return element(i)(r); });
        return;
    }
    if constexpr (R == 1) {
        for (std::size_t i = 0; i < len; ++i) dst[i] = element(i)(0);
    } else {
        // No element depends on another's store (the runs are disjoint, and an input that dst may
        // be is read at the stored position only): said to GCC, which would otherwise check every
        // pair of the runs and the coefficients for overlap at run time, and past its limit of such
        // checks (vect-max-version-for-alias-checks) not vectorize at all. Not said for one run,
        // whose checks are few: LayerNorm's forward at (64, 512, 1) was 1.09x slower. Nor to clang
        // (the sanitizer builds): its assume_safety is an order to vectorize, an error under -Werror
        // where it cannot (AddressSanitizer's instrumented loops).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC ivdep
#endif
        for (std::size_t i = 0; i < len; ++i) {
            const auto value = element(i);
            for (std::size_t r = 0; r < R; ++r) dst[r * stride + i] = value(r);
        }
    }
}

}  // namespace xgrad::normalization_detail
