// For the tests of shapes chosen to reach the normalization kernels' streamed passes: whether a
// grouping takes them, asked of the conditions the kernels decide by (blocked.hpp's group_walk,
// elementwise.hpp's streams) rather than restated, so that a change of the thresholds cannot stop
// checking those passes unseen.
#pragma once

#include <cstddef>

#include <gtest/gtest.h>

#include "layers/normalization/blocked.hpp"
#include "layers/normalization/elementwise.hpp"

namespace xgrad_test {

// The forward (x and y) and the backward (dy, x and dx) of `grouping` in T walk it in cache blocks
// at one and two threads, and their elementwise passes stream their outputs wherever the build has
// streaming stores.
template <class T>
void expectStreamedWalk(const xgrad::Grouping& grouping) {
    using namespace xgrad::normalization_detail;
    for (std::size_t threads : {1, 2}) {
        for (std::size_t tensors : {2, 3}) {
            EXPECT_TRUE(group_walk(grouping, tensors * sizeof(T), threads).blocked)
                << tensors << " tensors, " << threads << " threads";
        }
    }
    // Past the caches on every build (which also sums the statistics reading ahead); streamed where
    // the build has streaming stores.
    EXPECT_TRUE(xgrad::past_the_caches(grouping.row_view().size(), sizeof(T)));
    EXPECT_EQ(streams(grouping.row_view(), sizeof(T), xgrad::Rows::block(0, 1)), kStreamingStores);
}

}  // namespace xgrad_test
