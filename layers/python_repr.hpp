// Python's spelling of the values a module's describe() shows, so that reprs read as torch's:
// floats as Python's repr ("1e-05", "0.1"), booleans as True and False.
#pragma once

#include <charconv>
#include <string>

namespace xgrad {

// The shortest text that reads back as v: Python's repr for the eps and momentum values reprs
// show ("1e-05", "0.1"), though an integral value has no ".0" ("1").
inline std::string python_float(double v) {
    char buf[32];
    const auto end = std::to_chars(buf, buf + sizeof buf, v).ptr;
    return std::string(buf, end);
}

inline const char* python_bool(bool b) { return b ? "True" : "False"; }

}  // namespace xgrad
