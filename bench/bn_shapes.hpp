// The BatchNorm shapes every BN benchmark runs, as (N, C, S = H*W), each with 1 and 2 threads:
// the seed CNN's bn1 and bn2 at batch 64, four common CNN layers, and BatchNorm1d at the paper
// MLP's batch and width and at a wide layer. One list, so xgrad's and oneDNN's figures pair up.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <optional>
#include <vector>

#include <benchmark/benchmark.h>

namespace xgrad_bench {

// Registers (N, C, S, threads, extra(N, C, S)...) for each shape and thread count, skipping the
// shapes for which extra gives nothing (a layer that cannot take the shape).
template <class Extra>
void bn_shapes_with(benchmark::internal::Benchmark* b, const Extra& extra) {
    const std::int64_t shapes[][3] = {{64, 32, 28 * 28}, {64, 64, 14 * 14}, {32, 64, 56 * 56}, {32, 256, 14 * 14},
                                      {16, 3, 224 * 224}, {64, 512, 1},     {60, 100, 1},      {256, 1024, 1}};
    for (std::int64_t threads : {1, 2}) {
        for (const auto& s : shapes) {
            const std::optional<std::vector<std::int64_t>> more = extra(s[0], s[1], s[2]);
            if (!more) continue;
            std::vector<std::int64_t> args{s[0], s[1], s[2], threads};
            args.insert(args.end(), more->begin(), more->end());
            b->Args(args);
        }
    }
    b->Unit(benchmark::kMicrosecond)->UseRealTime();
}

inline void bn_shapes(benchmark::internal::Benchmark* b, std::vector<std::int64_t> extra = {}) {
    bn_shapes_with(b, [&](std::int64_t, std::int64_t, std::int64_t) { return std::optional(extra); });
}

}  // namespace xgrad_bench
