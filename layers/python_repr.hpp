// Python's spelling of the values a module's describe() shows, so that reprs read as torch's:
// floats as Python's repr ("1e-05", "0.1"), booleans as True and False.
#pragma once

#include <charconv>
#include <string>

namespace xgrad {

// The shortest text that reads back as v, as Python's repr of a float prints it.
inline std::string python_float(double v) {
    char buf[32];
    const auto end = std::to_chars(buf, buf + sizeof buf, v).ptr;
    return std::string(buf, end);
}

inline const char* python_bool(bool b) { return b ? "True" : "False"; }

}  // namespace xgrad
