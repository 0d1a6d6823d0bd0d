// What the normalization benchmarks share: the (N, C, S) shape and thread count read from a
// benchmark's arguments (N, C, S, threads, ...), and reproducible random tensors.
#pragma once

#include <algorithm>
#include <cstddef>
#include <random>
#include <vector>

#include <benchmark/benchmark.h>
#include <tbb/global_control.h>

#include "layers/normalization/channel_reduce.hpp"

namespace xgrad_bench {

inline xgrad::ChannelShape shape_of(const benchmark::State& state) {
    return {static_cast<std::size_t>(state.range(0)), static_cast<std::size_t>(state.range(1)),
            static_cast<std::size_t>(state.range(2))};
}

// The thread count is argument `index`: 3 in the (N, C, S, threads) benchmarks.
inline tbb::global_control threads_of(const benchmark::State& state, int index = 3) {
    return tbb::global_control(tbb::global_control::max_allowed_parallelism,
                               static_cast<std::size_t>(state.range(index)));
}

inline std::vector<float> random_vector(std::size_t n, unsigned seed, float mean, float stddev = 1.0f) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> dist(mean, stddev);
    std::vector<float> v(n);
    std::generate(v.begin(), v.end(), [&] { return dist(rng); });
    return v;
}

}  // namespace xgrad_bench
