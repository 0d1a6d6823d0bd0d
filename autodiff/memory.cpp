#include "autodiff/memory.hpp"

#include <malloc.h>

#include <stdexcept>

#include "autodiff/address_sanitizer.hpp"

namespace xgrad {

void retain_freed_memory() {
#if defined(XGRAD_ADDRESS_SANITIZER)
    return;  // AddressSanitizer's allocator replaces glibc's, and its mallopt refuses every setting
#endif
    // No mmap'd blocks: large blocks come from the heap and return to it. The heap's freed top is
    // given back to the kernel only once it exceeds 1 GiB.
    constexpr int trim_threshold = 1 << 30;
    if (mallopt(M_MMAP_MAX, 0) != 1 || mallopt(M_TRIM_THRESHOLD, trim_threshold) != 1) {
        throw std::runtime_error("retain_freed_memory: mallopt refused M_MMAP_MAX=0 or M_TRIM_THRESHOLD");
    }
}

}  // namespace xgrad
