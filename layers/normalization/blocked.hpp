// The cache-blocked walk of a normalization's stages: when a group's slab fits in a core's cache
// (or, for tensors past the caches, in a share of the last-level cache), a forward or backward runs
// its sums, its per-group arithmetic and its elementwise pass block of groups by block of groups,
// so that each tensor is read from memory once (the later passes over a block read it from L2, or
// from L3). Otherwise each stage runs over the whole tensor in parallel. Both give the same bits: a
// block's sums are those of the whole tensor (channel_sums_serial), and an elementwise result does
// not depend on who computes it.
#pragma once

#include <algorithm>
#include <cstddef>

#include <tbb/blocked_range.h>
#include <tbb/parallel_for.h>

#include "autodiff/threads.hpp"
#include "layers/normalization/channel_reduce.hpp"
#include "layers/normalization/grouping.hpp"
#include "layers/normalization/runs.hpp"

namespace xgrad::normalization_detail {

// A group block's bytes, over all the tensors a kernel reads and writes, that a core's cache (L2)
// keeps between the kernel's passes over the block.
inline constexpr std::size_t kCachedBlockBytes = 1 << 20;
// For tensors past the caches (past_the_caches), a group of up to this many bytes is still a block
// of its own: the passes after its first then read it from the last-level cache, not from memory.
inline constexpr std::size_t kLastLevelBlockBytes = 1 << 22;

// The rows of the groups of `groups`.
inline Rows rows_of(const Grouping& grouping, const Rows& groups) {
    const std::size_t k = grouping.rows_per_group();
    return {groups.begin * k, groups.end * k, groups.whole};
}

// How for_each_group_block walks a grouping with `threads` threads, in one of two ways:
//  - blocked: group blocks in parallel, each through all the kernel's steps while its slab is in
//    cache. Taken when a group's elements are whole runs of rows (the reduction's runs layout), a
//    block of one group fits kCachedBlockBytes (or kLastLevelBlockBytes, past the caches:
//    last_level), and there are groups enough to keep the threads balanced;
//  - whole: the kernel once over all groups, each step parallel over the whole tensor.
struct GroupWalk {
    bool blocked = false;
    bool last_level = false;  // blocked, a group past kCachedBlockBytes
    bool serial = false;      // blocked, in the calling thread
    std::size_t block = 0;    // blocked: groups per block
};

inline GroupWalk group_walk(const Grouping& grouping, std::size_t bytes_per_element, std::size_t threads) {
    const ChannelShape sh = grouping.statistics_view();
    const std::size_t slab = std::max<std::size_t>(1, sh.per_channel() * bytes_per_element);
    const bool serial = sh.size() < kSerialBelow || threads <= 1;
    const bool cached = slab <= kCachedBlockBytes;
    const bool fits = cached || (slab <= kLastLevelBlockBytes && past_the_caches(sh.size(), bytes_per_element));
    if (channel_partition(sh).layout != ChannelLayout::runs || !fits || !(serial || sh.c >= 4 * threads)) return {};
    // Groups per block: as many as the cache holds, few enough to balance the threads.
    std::size_t block = std::max<std::size_t>(1, kCachedBlockBytes / slab);
    if (!serial) block = std::min(block, sh.c / (4 * threads));
    return {true, !cached, serial, block};
}

// Runs kernel(Rows groups) over the tensor as group_walk says, with the threads available.
template <class Kernel>
void for_each_group_block(const Grouping& grouping, std::size_t bytes_per_element, const Kernel& kernel) {
    const std::size_t groups = grouping.statistics_view().c;
    const GroupWalk walk = group_walk(grouping, bytes_per_element, static_cast<std::size_t>(available_threads()));
    if (!walk.blocked) {
        kernel(Rows::all(groups));
        return;
    }
    const std::size_t block = walk.block;
    const auto blocks = [&](std::size_t g0, std::size_t g1) {
        for (std::size_t g = g0; g < g1; g += block) kernel(Rows::block(g, std::min(g1, g + block)));
    };
    if (walk.serial) {
        blocks(0, groups);
        return;
    }
    tbb::parallel_for(tbb::blocked_range<std::size_t>(0, groups, block),
                      [&](const tbb::blocked_range<std::size_t>& r) { blocks(r.begin(), r.end()); });
}

}  // namespace xgrad::normalization_detail
