// Shapes: the project's shape type, how shapes print in error messages, and numpy broadcasting.
#pragma once

#include <cstddef>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace xgrad {

using Shape = std::vector<std::size_t>;

// Thrown whenever an operation is given operands whose shapes it cannot accept.
class ShapeError : public std::invalid_argument {
public:
    using std::invalid_argument::invalid_argument;
};

// "(2, 3)"; "()" for a scalar. Works for any container of integers.
template <class S>
std::string shape_str(const S& shape) {
    std::string s = "(";
    bool first = true;
    for (auto d : shape) {
        if (!first) s += ", ";
        s += std::to_string(d);
        first = false;
    }
    return s + ")";
}

template <class S>
Shape to_shape(const S& s) {
    return Shape(s.begin(), s.end());
}

// The numpy broadcast of two shapes; throws a ShapeError naming `op` and both shapes.
Shape broadcast_shapes(std::string_view op, const Shape& a, const Shape& b);

std::size_t element_count(const Shape& shape);

}  // namespace xgrad
