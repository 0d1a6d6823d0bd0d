#include "layers/distribution_noise.hpp"

#include <stdexcept>

#include "autodiff/elementwise_ops.hpp"

namespace xgrad {

template <class T>
DistributionNoise<T>::DistributionNoise(std::uint64_t seed) : rng_(seed) {}

template <class T>
Var<T> DistributionNoise<T>::forward(const Var<T>& x) {
    if (!this->is_training()) return x;
    const Shape shape = x.shape();
    if (shape.size() < 2) {
        throw std::invalid_argument(this->where() + ": expected an input of shape (N, C) or (N, C, ...), got " +
                                    shape_str(shape));
    }
    const std::size_t n = shape[0], c = shape[1];
    // Scale and shift per (sample, unit), broadcast over any further dimensions.
    Shape per_unit(shape.size(), 1);
    per_unit[0] = n;
    per_unit[1] = c;
    xt::xarray<T> scale = xt::xarray<T>::from_shape(per_unit);
    xt::xarray<T> shift = xt::xarray<T>::from_shape(per_unit);
    for (std::size_t j = 0; j < c; ++j) {
        const double mu = rng_.uniform(-0.5, 0.5);
        const double sigma = rng_.uniform(1.0, 1.25);
        for (std::size_t i = 0; i < n; ++i) {
            shift.data()[i * c + j] = static_cast<T>(rng_.uniform(mu - 0.1, mu + 0.1));
            scale.data()[i * c + j] = static_cast<T>(rng_.normal(sigma, 0.1));
        }
    }
    return x * Var<T>(std::move(scale)) + Var<T>(std::move(shift));
}

template class DistributionNoise<float>;
template class DistributionNoise<double>;

}  // namespace xgrad
