#include "autodiff/memory.hpp"

#include <malloc.h>

#include <stdexcept>

namespace xgrad {

void retain_freed_memory() {
    // No mmap'd blocks: large blocks come from the heap and return to it. A trim threshold of
    // 1 GiB keeps the heap's freed top (up to that much) instead of returning it at once.
    constexpr int trim_threshold = 1 << 30;
    if (mallopt(M_MMAP_MAX, 0) != 1 || mallopt(M_TRIM_THRESHOLD, trim_threshold) != 1) {
        throw std::runtime_error("retain_freed_memory: mallopt refused M_MMAP_MAX=0 or M_TRIM_THRESHOLD");
    }
}

}  // namespace xgrad
