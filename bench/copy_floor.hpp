// The bandwidth floor of a memory-bound kernel, measured in the same binary as the kernel: a copy
// of the same working set, at the same thread count. A kernel that must read and write `traffic`
// bytes can take no less than a memcpy of traffic / 2 bytes (which reads traffic / 2 and writes
// traffic / 2, over a working set of the same size, so an L2- or L3-resident tensor is compared
// with an L2- or L3-resident copy rather than with DRAM bandwidth).
#pragma once

#include <cstddef>

#include <benchmark/benchmark.h>

namespace xgrad_bench {

// Seconds a threaded copy of `bytes` between page-aligned buffers takes with `threads` threads
// (64 KiB pieces over TBB; the faster of glibc's memcpy and a loop of vector loads and stores):
// the median of several timed repetitions, measured anew at each call, so that a kernel's x_copy
// compares its time with a floor measured under the same load, right after it.
double copy_seconds(std::size_t bytes, int threads);

// A copy of `bytes` in 64 KiB pieces over TBB with full-width vector loads and stores, which no
// relative misalignment of the buffers slows down much (glibc's memcpy, on some CPUs, ten times).
void vector_copy(const void* src, void* dst, std::size_t bytes);

// Sets the kernel's counters from its minimal traffic per iteration (bytes read + written):
// bytes_per_second, and x_copy = the time per iteration over the copy floor of that traffic.
void set_traffic_counters(benchmark::State& state, std::size_t traffic_bytes, int threads);

}  // namespace xgrad_bench
