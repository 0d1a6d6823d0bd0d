// The floor of a normalization's passes over tensors in cache, beside the copy floor
// (bench/copy_floor.hpp): a normalization must read all of a group's x (forward) or dy and x
// (backward) before it writes any of the group's y or dx, so it reads its inputs twice, the second
// time from wherever a group fits in cache.
#pragma once

#include <cstddef>
#include <span>

namespace xgrad_bench {

// The least a normalization's pass over groups of `group` elements can do in cache: each group of
// the float tensors `sources`, taken as contiguous, read once on its own (each summed in float, the
// cheapest statistics or backward sums there are), then dst = their elementwise sum written with
// plain stores while the group is in cache, groups spread over the threads. Over tensors in the
// last-level cache, with many more groups than threads, no kernel with such groups can take less
// (its groups are also strided); the larger the group, the further the second read comes from.
// Past the caches a kernel that reads ahead and writes with streaming stores can, and with fewer
// groups than about four per thread a kernel that splits a group between threads
// (bench/RESULTS.md).
void two_pass_floor(std::span<const float* const> sources, float* dst, std::size_t elements, std::size_t group);

}  // namespace xgrad_bench
