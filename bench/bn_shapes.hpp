// The BatchNorm shapes every BN benchmark runs, as (N, C, S = H*W), each with 1 and 2 threads:
// the seed CNN's bn1 and bn2 at batch 64, four common CNN layers, and BatchNorm1d at the paper
// MLP's batch and width and at a wide layer. One list, so xgrad's and oneDNN's figures pair up.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <vector>

#include <benchmark/benchmark.h>

namespace xgrad_bench {

inline void bn_shapes(benchmark::internal::Benchmark* b, std::vector<std::int64_t> extra = {}) {
    const std::int64_t shapes[][3] = {{64, 32, 28 * 28}, {64, 64, 14 * 14}, {32, 64, 56 * 56}, {32, 256, 14 * 14},
                                      {16, 3, 224 * 224}, {64, 512, 1},     {60, 100, 1},      {256, 1024, 1}};
    for (std::int64_t threads : {1, 2}) {
        for (const auto& s : shapes) {
            std::vector<std::int64_t> args{s[0], s[1], s[2], threads};
            args.insert(args.end(), extra.begin(), extra.end());
            b->Args(args);
        }
    }
    b->Unit(benchmark::kMicrosecond)->UseRealTime();
}

}  // namespace xgrad_bench
