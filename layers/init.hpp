// Parameter initialization: one seeded generator type (Rng) behind every init, torch's
// nn.init functions (uniform, normal, Xavier, Kaiming) with torch's formulas, and the default
// init torch gives Linear and Conv2d weights and biases.
#pragma once

#include <cstdint>
#include <random>

#include <xtensor/xarray.hpp>

#include "autodiff/shape.hpp"

namespace xgrad {

// A seeded std::mt19937_64 with its own uniform and normal transforms, written out here so a
// seed gives the same numbers with any standard library.
class Rng {
public:
    explicit Rng(std::uint64_t seed = 0) : engine_(seed) {}
    void seed(std::uint64_t seed) { engine_.seed(seed); }
    std::mt19937_64& engine() { return engine_; }

    // Uniform on [0, 1), 53 random bits.
    double uniform();
    double uniform(double lo, double hi) { return lo + (hi - lo) * uniform(); }
    // Box-Muller; uses two uniforms per draw and keeps no spare value, so state is the engine alone.
    double normal(double mean = 0.0, double std = 1.0);
    // A seed for another generator (e.g. a Dropout layer's), drawn from this one.
    std::uint64_t next_seed() { return engine_(); }

private:
    std::mt19937_64 engine_;
};

// The generator layers use when none is given, as torch's global generator; manual_seed reseeds it.
Rng& default_rng();
void manual_seed(std::uint64_t seed);

enum class Nonlinearity { linear, conv, sigmoid, tanh, relu, leaky_relu, selu };
enum class FanMode { fan_in, fan_out };

// torch.nn.init.calculate_gain; `param` is leaky_relu's negative slope (torch's default 0.01).
double calculate_gain(Nonlinearity nonlinearity, double param = 0.01);

struct Fans {
    std::size_t fan_in = 0;
    std::size_t fan_out = 0;
};
// As torch's _calculate_fan_in_and_fan_out: (out, in, k...) has fan_in = in * prod(k) and
// fan_out = out * prod(k). Fewer than 2 dimensions is a std::invalid_argument.
Fans fans(const Shape& shape);

template <class T>
void uniform_(xt::xarray<T>& tensor, double lo, double hi, Rng& rng = default_rng());
template <class T>
void normal_(xt::xarray<T>& tensor, double mean = 0.0, double std = 1.0, Rng& rng = default_rng());
template <class T>
void xavier_uniform_(xt::xarray<T>& tensor, double gain = 1.0, Rng& rng = default_rng());
template <class T>
void xavier_normal_(xt::xarray<T>& tensor, double gain = 1.0, Rng& rng = default_rng());
// `a` is the negative slope of the leaky_relu that follows (only used with leaky_relu).
template <class T>
void kaiming_uniform_(xt::xarray<T>& tensor, double a = 0.0, FanMode mode = FanMode::fan_in,
                      Nonlinearity nonlinearity = Nonlinearity::leaky_relu, Rng& rng = default_rng());
template <class T>
void kaiming_normal_(xt::xarray<T>& tensor, double a = 0.0, FanMode mode = FanMode::fan_in,
                     Nonlinearity nonlinearity = Nonlinearity::leaky_relu, Rng& rng = default_rng());

// torch's reset_parameters of Linear and Conv2d: kaiming_uniform_(weight, a = sqrt(5)), which is
// U(-1/sqrt(fan_in), 1/sqrt(fan_in)), and the bias (if any) from the same bound.
template <class T>
void default_init_(xt::xarray<T>& weight, xt::xarray<T>* bias, Rng& rng = default_rng());

}  // namespace xgrad
