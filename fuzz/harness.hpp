// What every libFuzzer harness of fuzz/ shares. A harness feeds one input to a reader, catches
// only the exceptions the reader documents for bad input, and checks what the reader returns;
// anything else (a crash, another exception, a sanitizer report, a property that fails) stops the
// fuzzer with the input saved, as a bug in the reader.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string_view>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size);

namespace xgrad_fuzz {

inline std::string_view input_bytes(const std::uint8_t* data, std::size_t size) {
    return {reinterpret_cast<const char*>(data), size};
}

// A reader returned something it must not have: abort, which libFuzzer reports as a crash.
[[noreturn]] inline void property_failed(const char* what) {
    std::fprintf(stderr, "property failed: %s\n", what);
    std::abort();
}

}  // namespace xgrad_fuzz
