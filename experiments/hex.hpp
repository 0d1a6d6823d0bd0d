#pragma once

#include <cstdint>
#include <cstdio>
#include <string>

namespace xgrad {

// v as "0x" and eight hex digits: how errors quote a file's magic numbers and checksums.
inline std::string hex32(std::uint32_t v) {
    char text[11];
    std::snprintf(text, sizeof text, "0x%08x", v);
    return text;
}

}  // namespace xgrad
