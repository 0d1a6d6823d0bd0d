// The process's policy for memory that large arrays free.
#pragma once

namespace xgrad {

// glibc hands every block above its mmap threshold (32 MiB at most) back to the kernel on free,
// so a step that allocates the same large arrays every iteration (activations, gradients) pays
// a page fault and a zero-fill per 4 KiB on each. This keeps freed memory in the process, where
// the next allocation of that size reuses it: the role a caching allocator (jemalloc, tcmalloc)
// plays for PyTorch. For the main arena, which serves the main thread (other threads' arenas keep
// glibc's rules); the `xgrad` CLI and the benchmarks call it at start.
// Throws std::runtime_error if the C library refuses the setting. Does nothing in an
// AddressSanitizer build, whose allocator replaces glibc's.
void retain_freed_memory();

}  // namespace xgrad
