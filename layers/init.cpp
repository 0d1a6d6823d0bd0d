#include "layers/init.hpp"

#include <cmath>
#include <numbers>
#include <stdexcept>

namespace xgrad {

double Rng::uniform() {
    return static_cast<double>(engine_() >> 11) * 0x1.0p-53;
}

double Rng::normal(double mean, double std) {
    // 1 - u is in (0, 1], so the log is finite.
    const double radius = std::sqrt(-2.0 * std::log(1.0 - uniform()));
    return mean + std * radius * std::cos(2.0 * std::numbers::pi * uniform());
}

Rng& default_rng() {
    static Rng rng;
    return rng;
}

void manual_seed(std::uint64_t seed) { default_rng().seed(seed); }

double calculate_gain(Nonlinearity nonlinearity, double param) {
    switch (nonlinearity) {
        case Nonlinearity::linear:
        case Nonlinearity::conv:
        case Nonlinearity::sigmoid:
            return 1.0;
        case Nonlinearity::tanh:
            return 5.0 / 3.0;
        case Nonlinearity::relu:
            return std::sqrt(2.0);
        case Nonlinearity::leaky_relu:
            return std::sqrt(2.0 / (1.0 + param * param));
        case Nonlinearity::selu:
            return 0.75;
    }
    throw std::invalid_argument("calculate_gain: unknown nonlinearity");
}

Fans fans(const Shape& shape) {
    if (shape.size() < 2) {
        throw std::invalid_argument("fan in and fan out can not be computed for a tensor of shape " +
                                    shape_str(shape) + " (fewer than 2 dimensions)");
    }
    std::size_t receptive = 1;
    for (std::size_t d = 2; d < shape.size(); ++d) receptive *= shape[d];
    return {shape[1] * receptive, shape[0] * receptive};
}

namespace {

template <class T, class Draw>
void fill(xt::xarray<T>& tensor, Draw draw) {
    for (auto& v : tensor) v = static_cast<T>(draw());
}

// torch's _calculate_correct_fan, as a double for the formulas.
double fan(const Shape& shape, FanMode mode) {
    const Fans f = fans(shape);
    return static_cast<double>(mode == FanMode::fan_in ? f.fan_in : f.fan_out);
}

double xavier_std(const Shape& shape, double gain) {
    const Fans f = fans(shape);
    return gain * std::sqrt(2.0 / static_cast<double>(f.fan_in + f.fan_out));
}

}  // namespace

template <class T>
void uniform_(xt::xarray<T>& tensor, double lo, double hi, Rng& rng) {
    fill(tensor, [&] { return rng.uniform(lo, hi); });
}

template <class T>
void normal_(xt::xarray<T>& tensor, double mean, double std, Rng& rng) {
    fill(tensor, [&] { return rng.normal(mean, std); });
}

// Zero-element tensors are left alone, as torch does (their fans may be 0).
template <class T>
void xavier_uniform_(xt::xarray<T>& tensor, double gain, Rng& rng) {
    if (tensor.size() == 0) return;
    const double bound = std::sqrt(3.0) * xavier_std(to_shape(tensor.shape()), gain);
    uniform_(tensor, -bound, bound, rng);
}

template <class T>
void xavier_normal_(xt::xarray<T>& tensor, double gain, Rng& rng) {
    if (tensor.size() == 0) return;
    normal_(tensor, 0.0, xavier_std(to_shape(tensor.shape()), gain), rng);
}

template <class T>
void kaiming_uniform_(xt::xarray<T>& tensor, double a, FanMode mode, Nonlinearity nonlinearity, Rng& rng) {
    if (tensor.size() == 0) return;
    const double std = calculate_gain(nonlinearity, a) / std::sqrt(fan(to_shape(tensor.shape()), mode));
    const double bound = std::sqrt(3.0) * std;
    uniform_(tensor, -bound, bound, rng);
}

template <class T>
void kaiming_normal_(xt::xarray<T>& tensor, double a, FanMode mode, Nonlinearity nonlinearity, Rng& rng) {
    if (tensor.size() == 0) return;
    const double std = calculate_gain(nonlinearity, a) / std::sqrt(fan(to_shape(tensor.shape()), mode));
    normal_(tensor, 0.0, std, rng);
}

template <class T>
void default_init_(xt::xarray<T>& weight, xt::xarray<T>* bias, Rng& rng) {
    kaiming_uniform_(weight, std::sqrt(5.0), FanMode::fan_in, Nonlinearity::leaky_relu, rng);
    if (bias) {
        const double fan_in = static_cast<double>(fans(to_shape(weight.shape())).fan_in);
        const double bound = fan_in > 0 ? 1.0 / std::sqrt(fan_in) : 0.0;
        uniform_(*bias, -bound, bound, rng);
    }
}

#define XGRAD_INSTANTIATE_INIT(T)                                                                  \
    template void uniform_(xt::xarray<T>&, double, double, Rng&);                                 \
    template void normal_(xt::xarray<T>&, double, double, Rng&);                                  \
    template void xavier_uniform_(xt::xarray<T>&, double, Rng&);                                  \
    template void xavier_normal_(xt::xarray<T>&, double, Rng&);                                   \
    template void kaiming_uniform_(xt::xarray<T>&, double, FanMode, Nonlinearity, Rng&);          \
    template void kaiming_normal_(xt::xarray<T>&, double, FanMode, Nonlinearity, Rng&);           \
    template void default_init_(xt::xarray<T>&, xt::xarray<T>*, Rng&);
XGRAD_INSTANTIATE_INIT(float)
XGRAD_INSTANTIATE_INIT(double)
#undef XGRAD_INSTANTIATE_INIT

}  // namespace xgrad
