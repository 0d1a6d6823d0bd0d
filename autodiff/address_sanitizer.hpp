#pragma once

// XGRAD_ADDRESS_SANITIZER is defined where AddressSanitizer instruments the build. GCC says so with
// __SANITIZE_ADDRESS__; clang 14 only through __has_feature.
#if defined(__SANITIZE_ADDRESS__)
#define XGRAD_ADDRESS_SANITIZER 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define XGRAD_ADDRESS_SANITIZER 1
#endif
#endif
