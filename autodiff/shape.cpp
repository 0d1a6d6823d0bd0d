#include "autodiff/shape.hpp"

#include <algorithm>

namespace xgrad {

Shape broadcast_shapes(std::string_view op, const Shape& a, const Shape& b) {
    const std::size_t rank = std::max(a.size(), b.size());
    Shape out(rank);
    for (std::size_t i = 0; i < rank; ++i) {
        // Align from the right, as numpy does.
        const std::size_t da = i < rank - a.size() ? 1 : a[i - (rank - a.size())];
        const std::size_t db = i < rank - b.size() ? 1 : b[i - (rank - b.size())];
        if (da != db && da != 1 && db != 1) {
            throw ShapeError(std::string(op) + ": shapes " + shape_str(a) + " and " + shape_str(b) +
                             " cannot be broadcast together (dimension " + std::to_string(i) + ": " +
                             std::to_string(da) + " vs " + std::to_string(db) + ")");
        }
        out[i] = da == 1 ? db : da;
    }
    return out;
}

std::size_t element_count(const Shape& shape) {
    std::size_t n = 1;
    for (auto d : shape) n *= d;
    return n;
}

std::size_t normalize_axis(std::string_view op, std::ptrdiff_t axis, const Shape& shape) {
    const auto rank = static_cast<std::ptrdiff_t>(shape.size());
    const std::ptrdiff_t a = axis < 0 ? axis + rank : axis;
    if (a < 0 || a >= rank) {
        throw ShapeError(std::string(op) + ": axis " + std::to_string(axis) + " is out of range for shape " +
                         shape_str(shape));
    }
    return static_cast<std::size_t>(a);
}

AxisSplit split_at_axis(const Shape& shape, std::size_t axis) {
    AxisSplit s;
    for (std::size_t i = 0; i < shape.size(); ++i) {
        if (i < axis) s.outer *= shape[i];
        else if (i == axis) s.along = shape[i];
        else s.inner *= shape[i];
    }
    return s;
}

}  // namespace xgrad
