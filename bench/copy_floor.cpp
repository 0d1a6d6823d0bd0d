#include "bench/copy_floor.hpp"

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <new>
#include <vector>

#include <tbb/global_control.h>
#include <tbb/parallel_for.h>
#include <xsimd/xsimd.hpp>

namespace xgrad_bench {

namespace {

constexpr std::size_t kPiece = 1 << 16;  // bytes per task
constexpr std::size_t kPage = 4096;

// glibc's memcpy, which on some CPUs (AMD Zen 3 with `rep movsb`) is ten times slower when source
// and destination are misaligned relative to each other, even when both buffers are aligned.
void memcpy_piece(const char* src, char* dst, std::size_t bytes) { std::memcpy(dst, src, bytes); }

// Full-width vector loads and stores, which no alignment slows down much.
void vector_copy_piece(const char* src, char* dst, std::size_t bytes) {
    using batch = xsimd::batch<std::uint8_t>;
    std::size_t i = 0;
    for (; i + batch::size <= bytes; i += batch::size)
        batch::load_unaligned(reinterpret_cast<const std::uint8_t*>(src) + i)
            .store_unaligned(reinterpret_cast<std::uint8_t*>(dst) + i);
    std::memcpy(dst + i, src + i, bytes - i);
}

template <class CopyPiece>
void threaded_copy(const char* src, char* dst, std::size_t bytes, CopyPiece copy_piece) {
    tbb::parallel_for(std::size_t{0}, (bytes + kPiece - 1) / kPiece, [&](std::size_t p) {
        const std::size_t begin = p * kPiece;
        copy_piece(src + begin, dst + begin, std::min(kPiece, bytes - begin));
    });
}

struct FreeDeleter {
    void operator()(char* p) const { std::free(p); }
};

// A page-aligned buffer of `bytes` (at least one page), filled with `fill`.
std::unique_ptr<char, FreeDeleter> page_aligned(std::size_t bytes, char fill) {
    const std::size_t size = std::max(kPage, (bytes + kPage - 1) / kPage * kPage);
    std::unique_ptr<char, FreeDeleter> buffer(static_cast<char*>(std::aligned_alloc(kPage, size)));
    if (!buffer) throw std::bad_alloc();
    std::memset(buffer.get(), fill, size);
    return buffer;
}

// The median time of one copy of `bytes` with `copy_piece`.
template <class CopyPiece>
double time_copy(const char* src, char* dst, std::size_t bytes, CopyPiece copy_piece) {
    // Repetitions of at least ~2 ms each, so that small copies are not timed one at a time.
    using clock = std::chrono::steady_clock;
    threaded_copy(src, dst, bytes, copy_piece);  // warm caches
    std::size_t reps = 1;
    for (;;) {
        const auto t0 = clock::now();
        for (std::size_t r = 0; r < reps; ++r) threaded_copy(src, dst, bytes, copy_piece);
        if (clock::now() - t0 >= std::chrono::milliseconds(2)) break;
        reps *= 2;
    }
    std::vector<double> times;
    for (int i = 0; i < 9; ++i) {
        const auto t0 = clock::now();
        for (std::size_t r = 0; r < reps; ++r) threaded_copy(src, dst, bytes, copy_piece);
        benchmark::DoNotOptimize(dst);
        benchmark::ClobberMemory();
        times.push_back(std::chrono::duration<double>(clock::now() - t0).count() / static_cast<double>(reps));
    }
    std::nth_element(times.begin(), times.begin() + 4, times.end());
    return times[4];
}

// The faster of the two copies: the floor is what the hardware can do, not what one library does.
double measure_copy(std::size_t bytes, int threads) {
    tbb::global_control limit(tbb::global_control::max_allowed_parallelism, static_cast<std::size_t>(threads));
    const auto src = page_aligned(bytes, 1);
    const auto dst = page_aligned(bytes, 0);
    return std::min(time_copy(src.get(), dst.get(), bytes, memcpy_piece),
                    time_copy(src.get(), dst.get(), bytes, vector_copy_piece));
}

}  // namespace

double copy_seconds(std::size_t bytes, int threads) { return measure_copy(bytes, threads); }

void vector_copy(const void* src, void* dst, std::size_t bytes) {
    threaded_copy(static_cast<const char*>(src), static_cast<char*>(dst), bytes, vector_copy_piece);
}

void set_traffic_counters(benchmark::State& state, std::size_t traffic_bytes, int threads) {
    state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) * static_cast<std::int64_t>(traffic_bytes));
    // A rate counter divides by the measured time; inverted, iterations·floor / time becomes
    // time per iteration / floor.
    state.counters["x_copy"] =
        benchmark::Counter(copy_seconds(traffic_bytes / 2, threads),
                           benchmark::Counter::kIsIterationInvariantRate | benchmark::Counter::kInvert);
}

}  // namespace xgrad_bench
