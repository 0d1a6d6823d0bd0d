// A seeded synthetic classification task: K interleaved 2-D spirals with Gaussian noise.
#pragma once

#include <cstddef>
#include <cstdint>

#include <xtensor/xarray.hpp>

namespace xgrad {

struct Spirals {
    xt::xarray<float> points;        // (n, 2)
    xt::xarray<std::int64_t> labels;  // (n,), in [0, classes)
};

Spirals make_spirals(std::size_t points_per_class, std::size_t classes, float noise, std::uint64_t seed);

}  // namespace xgrad
