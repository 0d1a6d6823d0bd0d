#include "bench/copy_floor.hpp"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <vector>

#include <tbb/global_control.h>
#include <tbb/parallel_for.h>

namespace xgrad_bench {

namespace {

constexpr std::size_t kPiece = 1 << 16;  // bytes per task

void threaded_copy(const char* src, char* dst, std::size_t bytes) {
    tbb::parallel_for(std::size_t{0}, (bytes + kPiece - 1) / kPiece, [&](std::size_t p) {
        const std::size_t begin = p * kPiece;
        std::memcpy(dst + begin, src + begin, std::min(kPiece, bytes - begin));
    });
}

double measure_copy(std::size_t bytes, int threads) {
    tbb::global_control limit(tbb::global_control::max_allowed_parallelism, static_cast<std::size_t>(threads));
    std::vector<char> src(std::max<std::size_t>(bytes, 1), 1), dst(src.size(), 0);
    // Repetitions of at least ~2 ms each, so that small copies are not timed one at a time.
    using clock = std::chrono::steady_clock;
    threaded_copy(src.data(), dst.data(), bytes);  // first touch, warm caches
    std::size_t reps = 1;
    for (;;) {
        const auto t0 = clock::now();
        for (std::size_t r = 0; r < reps; ++r) threaded_copy(src.data(), dst.data(), bytes);
        if (clock::now() - t0 >= std::chrono::milliseconds(2)) break;
        reps *= 2;
    }
    std::vector<double> times;
    for (int i = 0; i < 9; ++i) {
        const auto t0 = clock::now();
        for (std::size_t r = 0; r < reps; ++r) threaded_copy(src.data(), dst.data(), bytes);
        benchmark::DoNotOptimize(dst.data());
        benchmark::ClobberMemory();
        times.push_back(std::chrono::duration<double>(clock::now() - t0).count() / static_cast<double>(reps));
    }
    std::nth_element(times.begin(), times.begin() + 4, times.end());
    return times[4];
}

}  // namespace

double copy_seconds(std::size_t bytes, int threads) { return measure_copy(bytes, threads); }

void set_traffic_counters(benchmark::State& state, std::size_t traffic_bytes, int threads) {
    state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) * static_cast<std::int64_t>(traffic_bytes));
    // A rate counter divides by the measured time; inverted, iterations·floor / time becomes
    // time per iteration / floor.
    state.counters["x_copy"] =
        benchmark::Counter(copy_seconds(traffic_bytes / 2, threads),
                           benchmark::Counter::kIsIterationInvariantRate | benchmark::Counter::kInvert);
}

}  // namespace xgrad_bench
