#include "layers/window.hpp"

#include <cstdint>

namespace xgrad {

WindowGeometry window_geometry(const std::string& where, const Shape& input, std::optional<std::size_t> channels,
                               Size2 kernel, Size2 stride, Size2 padding) {
    if (input.size() != 4 || (channels && input[1] != *channels)) {
        throw ShapeError(where + ": expected input (N, " + (channels ? std::to_string(*channels) : "C") +
                         ", H, W), got " + shape_str(input));
    }
    WindowGeometry g{input[0], input[1], input[2], input[3], kernel, stride, padding, 0, 0};
    const std::size_t padded_h = g.h + 2 * padding.h;
    const std::size_t padded_w = g.w + 2 * padding.w;
    if (padded_h < kernel.h || padded_w < kernel.w) {
        throw ShapeError(where + ": input " + shape_str(input) + " is " + Size2(padded_h, padded_w).str() +
                         " per channel with padding, smaller than the kernel " + kernel.str());
    }
    g.oh = (padded_h - kernel.h) / stride.h + 1;
    g.ow = (padded_w - kernel.w) / stride.w + 1;
    return g;
}

WindowGeometry pooling_geometry(const std::string& where, const Shape& input, Size2 kernel, Size2 stride) {
    const WindowGeometry g = window_geometry(where, input, std::nullopt, kernel, stride, Size2(0));
    if (g.in_plane() > UINT32_MAX) {
        throw ShapeError(where + ": input planes of more than 2^32 elements are not supported, got " + shape_str(input));
    }
    return g;
}

}  // namespace xgrad
