// Finite-difference checks for inputs too large for xgrad::gradcheck, which runs two forwards per
// element: the projection <r, f(x)> (r fixed pseudo-random weights, as gradcheck's) differenced
// along random directions of all inputs at once, which checks every element's gradient in two
// forwards, and at a few sampled elements of each input, as gradcheck does them. In double.
//
// Along a direction v the derivative <g, v> is a sum of many terms of random signs, which may
// cancel to near 0 by chance: its error is measured against the size the sum has before luck,
// sqrt(Σ (g_i·v_i)²), not against the sum. The step is sqrt(eps) rather than gradcheck's cbrt(eps):
// the rounding of many outputs averages out in <r, ·>, and the smaller step keeps the truncation
// error small where a group of a few elements has a small spread (a large, randomly drawn input
// has some).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include <rapidcheck.h>

#include "tests/generators.hpp"

namespace xgrad_test {

namespace large_gradcheck_detail {

inline double project(const Array& y, const Array& r) {
    double s = 0.0;
    for (std::size_t i = 0; i < y.size(); ++i) s += y.data()[i] * r.data()[i];
    return s;
}

inline double relativeScale(double analytic, double numeric) {
    return std::max({1.0, std::abs(analytic), std::abs(numeric)});
}

inline double relativeError(double analytic, double numeric) {
    return std::abs(analytic - numeric) / relativeScale(analytic, numeric);
}

}  // namespace large_gradcheck_detail

// Fails the property unless, along `directions` random directions and at `samples` random elements
// of each input, central differences agree with the analytic gradient within the bound.
inline void checkLargeGradients(const std::function<Var<double>(const std::vector<Var<double>>&)>& f,
                                std::vector<Var<double>> inputs, std::uint32_t seed, const std::string& what,
                                int directions = 2, int samples = 8, double tolerance = gradcheck_tolerance) {
    using namespace large_gradcheck_detail;
    std::mt19937_64 rng(seed);
    std::uniform_real_distribution<double> magnitude(0.5, 1.5);
    std::uniform_real_distribution<double> unit(-1.0, 1.0);
    for (auto& in : inputs) in.zero_grad();
    const Var<double> out = f(inputs);
    Array r = Array::from_shape(out.value().shape());
    for (auto& w : r) w = (rng() & 1 ? 1.0 : -1.0) * magnitude(rng);
    out.backward(r);
    std::vector<Array> analytic;
    for (const auto& in : inputs) analytic.push_back(in.grad());

    xgrad::NoGrad no_grad;
    const double step_scale = std::cbrt(std::numeric_limits<double>::epsilon());
    const double direction_step_scale = std::sqrt(std::numeric_limits<double>::epsilon());
    const auto fail = [&](const std::string& where, double a, double numeric) {
        std::ostringstream msg;
        msg.precision(17);
        msg << what << ": " << where << ": analytic " << a << ", numeric " << numeric;
        RC_FAIL(msg.str());
    };
    for (int d = 0; d < directions; ++d) {
        std::vector<Array> original, direction;
        double largest = 1.0;
        double a = 0.0;
        double size = 0.0;  // of a before cancellation: sqrt(Σ (g_i·v_i)²)
        for (std::size_t k = 0; k < inputs.size(); ++k) {
            original.push_back(inputs[k].value());
            Array v = Array::from_shape(original[k].shape());
            for (auto& e : v) e = unit(rng);
            for (std::size_t i = 0; i < v.size(); ++i) {
                const double term = analytic[k].data()[i] * v.data()[i];
                a += term;
                size += term * term;
            }
            largest = std::max(largest, xt::amax(xt::abs(original[k]))());
            direction.push_back(std::move(v));
        }
        const double h = direction_step_scale * largest;
        const auto at = [&](double t) {
            for (std::size_t k = 0; k < inputs.size(); ++k) inputs[k].mutable_value() = original[k] + t * direction[k];
            return f(inputs).value();
        };
        const double numeric = project(at(h) - at(-h), r) / (2.0 * h);
        for (std::size_t k = 0; k < inputs.size(); ++k) inputs[k].mutable_value() = original[k];
        if (!(std::abs(a - numeric) <= tolerance * std::max(relativeScale(a, numeric), std::sqrt(size)))) {
            fail("direction " + std::to_string(d) + " (size " + std::to_string(std::sqrt(size)) + ")", a, numeric);
        }
    }
    for (std::size_t k = 0; k < inputs.size(); ++k) {
        Array& x = inputs[k].mutable_value();
        for (int s = 0; s < samples; ++s) {
            const std::size_t j = rng() % x.size();
            const double original = x.data()[j];
            const double h = step_scale * std::max(1.0, std::abs(original));
            x.data()[j] = original + h;
            const Array plus = f(inputs).value();
            x.data()[j] = original - h;
            const Array minus = f(inputs).value();
            x.data()[j] = original;
            // The difference first, as gradcheck: outputs x_j does not touch cancel exactly.
            const double numeric = project(plus - minus, r) / (2.0 * h);
            if (!(relativeError(analytic[k].data()[j], numeric) <= tolerance)) {
                fail("input " + std::to_string(k) + " of shape " + xgrad::shape_str(x.shape()) + " at flat index " +
                         std::to_string(j),
                     analytic[k].data()[j], numeric);
            }
        }
    }
}

}  // namespace xgrad_test
