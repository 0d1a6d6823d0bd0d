#include "bench/two_pass_floor.hpp"

#include <algorithm>
#include <stdexcept>
#include <string>

#include <benchmark/benchmark.h>
#include <tbb/parallel_for.h>
#include <xsimd/xsimd.hpp>

namespace xgrad_bench {

namespace {

// Σ of `count` floats in float, in four independent vector sums (so the adds keep up with loads).
float sum_piece(const float* src, std::size_t count) {
    using batch = xsimd::batch<float>;
    batch a = batch(0.0f), b = a, c = a, d = a;
    std::size_t i = 0;
    for (; i + 4 * batch::size <= count; i += 4 * batch::size) {
        a += batch::load_unaligned(src + i);
        b += batch::load_unaligned(src + i + batch::size);
        c += batch::load_unaligned(src + i + 2 * batch::size);
        d += batch::load_unaligned(src + i + 3 * batch::size);
    }
    float rest = 0.0f;
    for (; i < count; ++i) rest += src[i];
    return xsimd::hadd((a + b) + (c + d)) + rest;
}

// two_pass_floor with M sources: dst = their sum, four vectors at a time.
template <std::size_t M>
void two_pass_pieces(const float* const* sources, float* dst, std::size_t elements, std::size_t group) {
    using batch = xsimd::batch<float>;
    constexpr std::size_t kStep = 4 * batch::size;
    tbb::parallel_for(std::size_t{0}, (elements + group - 1) / group, [&](std::size_t p) {
        const std::size_t begin = p * group;
        const std::size_t end = std::min(elements, begin + group);
        for (std::size_t k = 0; k < M; ++k) benchmark::DoNotOptimize(sum_piece(sources[k] + begin, end - begin));
        const auto sum_at = [&](std::size_t i) {
            batch sum = batch::load_unaligned(sources[0] + i);
            for (std::size_t k = 1; k < M; ++k) sum += batch::load_unaligned(sources[k] + i);
            return sum;
        };
        std::size_t i = begin;
        for (; i + kStep <= end; i += kStep) {
            for (std::size_t v = 0; v < kStep; v += batch::size) sum_at(i + v).store_unaligned(dst + i + v);
        }
        for (; i < end; ++i) {
            float sum = sources[0][i];
            for (std::size_t k = 1; k < M; ++k) sum += sources[k][i];
            dst[i] = sum;
        }
    });
}

}  // namespace

void two_pass_floor(std::span<const float* const> sources, float* dst, std::size_t elements, std::size_t group) {
    if (group == 0) throw std::invalid_argument("two_pass_floor: groups of 0 elements");
    if (sources.size() == 1) {
        two_pass_pieces<1>(sources.data(), dst, elements, group);
    } else if (sources.size() == 2) {
        two_pass_pieces<2>(sources.data(), dst, elements, group);
    } else {
        throw std::invalid_argument("two_pass_floor: one or two sources, got " + std::to_string(sources.size()));
    }
}

}  // namespace xgrad_bench
