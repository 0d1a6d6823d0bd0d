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

// A possibly negative axis (counted from the end) as an index; a ShapeError naming `op` if out of range.
std::size_t normalize_axis(std::string_view op, std::ptrdiff_t axis, const Shape& shape);

// A shape seen as (outer, along, inner) around one axis: element (o, i, k) is at (o * along + i) * inner + k.
struct AxisSplit {
    std::size_t outer = 1;
    std::size_t along = 1;
    std::size_t inner = 1;
};
AxisSplit split_at_axis(const Shape& shape, std::size_t axis);

}  // namespace xgrad
