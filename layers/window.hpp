// The sliding-window geometry shared by Conv2d and MaxPool2d: 2-D sizes (kernel, stride,
// padding) given as one number or as (h, w), and the output size they give.
#pragma once

#include <array>
#include <cstddef>
#include <optional>
#include <string>

#include "autodiff/shape.hpp"

namespace xgrad {

struct Size2 {
    std::size_t h = 0;
    std::size_t w = 0;

    Size2(std::size_t both) : h(both), w(both) {}  // NOLINT: implicit on purpose, Conv2d(1, 32, 3)
    Size2(std::size_t h_, std::size_t w_) : h(h_), w(w_) {}

    bool operator==(const Size2&) const = default;
    // "(3, 3)", as torch prints kernel_size and stride.
    std::string str() const { return shape_str(std::array{h, w}); }
};

// The (N, C, H, W) input and the (OH, OW) output of a window of `kernel` moved by `stride` over
// the input padded by `padding` on each side.
struct WindowGeometry {
    std::size_t n = 0, c = 0, h = 0, w = 0;
    Size2 kernel{1}, stride{1}, padding{0};
    std::size_t oh = 0, ow = 0;

    std::size_t out_plane() const { return oh * ow; }
    std::size_t in_plane() const { return h * w; }
};

// Checks that `input` is (N, channels, H, W) (any C if channels is empty) and that the padded
// input holds one window; the ShapeErrors start with `where`, the layer they come from.
WindowGeometry window_geometry(const std::string& where, const Shape& input, std::optional<std::size_t> channels,
                               Size2 kernel, Size2 stride, Size2 padding);

// window_geometry of a pooling (no padding, any C), whose arg-maxes are 32-bit indices into an
// input plane: a ShapeError too for planes of more than 2^32 elements.
WindowGeometry pooling_geometry(const std::string& where, const Shape& input, Size2 kernel, Size2 stride);

}  // namespace xgrad
