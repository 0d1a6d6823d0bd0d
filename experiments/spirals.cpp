#include "experiments/spirals.hpp"

#include <cmath>
#include <numbers>
#include <random>

namespace xgrad {

Spirals make_spirals(std::size_t points_per_class, std::size_t classes, float noise, std::uint64_t seed) {
    const std::size_t n = points_per_class * classes;
    Spirals s{xt::xarray<float>::from_shape({n, 2}), xt::xarray<std::int64_t>::from_shape({n})};
    std::mt19937_64 rng(seed);
    std::normal_distribution<float> jitter(0.0f, noise);
    for (std::size_t k = 0; k < classes; ++k) {
        for (std::size_t i = 0; i < points_per_class; ++i) {
            const std::size_t row = k * points_per_class + i;
            const float radius = static_cast<float>(i) / static_cast<float>(points_per_class);
            const float angle = 4.0f * radius + 2.0f * std::numbers::pi_v<float> * static_cast<float>(k) /
                                                    static_cast<float>(classes);
            s.points(row, 0) = radius * std::sin(angle) + jitter(rng);
            s.points(row, 1) = radius * std::cos(angle) + jitter(rng);
            s.labels(row) = static_cast<std::int64_t>(k);
        }
    }
    return s;
}

}  // namespace xgrad
