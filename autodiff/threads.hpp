// The number of threads TBB work started here may use.
#pragma once

#include <algorithm>
#include <cstddef>

#include <tbb/global_control.h>
#include <tbb/task_arena.h>

namespace xgrad {

// Threads the current arena may use, also under a tbb::global_control limit (which
// max_concurrency alone does not report).
inline int available_threads() {
    const auto limit = tbb::global_control::active_value(tbb::global_control::max_allowed_parallelism);
    return static_cast<int>(std::min<std::size_t>(static_cast<std::size_t>(tbb::this_task_arena::max_concurrency()), limit));
}

}  // namespace xgrad
