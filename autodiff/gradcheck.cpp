#include "autodiff/gradcheck.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>
#include <stdexcept>

#include <xtensor/xrandom.hpp>

namespace xgrad {

namespace {

// <r, y> computed as a plain loop so that outputs an input does not touch cancel exactly.
double project(const xt::xarray<double>& y, const xt::xarray<double>& r) {
    double s = 0.0;
    for (std::size_t i = 0; i < y.size(); ++i) s += y.data()[i] * r.data()[i];
    return s;
}

}  // namespace

std::vector<GradcheckResult> gradcheck(const std::function<Var<double>(const std::vector<Var<double>>&)>& f,
                                       const std::vector<Var<double>>& inputs) {
    for (const auto& in : inputs) {
        if (!in.requires_grad()) throw std::invalid_argument("gradcheck: every input must have requires_grad");
    }
    for (auto in : inputs) in.zero_grad();
    const Var<double> out = f(inputs);
    // Fixed weights in [0.5, 1.5) with random signs: no output's error can hide behind a zero weight.
    std::mt19937_64 rng(20150211);
    std::uniform_real_distribution<double> magnitude(0.5, 1.5);
    xt::xarray<double> r = xt::xarray<double>::from_shape(out.value().shape());
    for (auto& w : r) w = (rng() & 1 ? 1.0 : -1.0) * magnitude(rng);
    out.backward(r);

    const double step_scale = std::cbrt(std::numeric_limits<double>::epsilon());
    std::vector<GradcheckResult> results(inputs.size());
    NoGrad no_grad;
    for (std::size_t k = 0; k < inputs.size(); ++k) {
        Var<double> in = inputs[k];
        if (!in.has_grad()) {
            throw std::logic_error("gradcheck: input " + std::to_string(k) + " received no gradient");
        }
        const xt::xarray<double> analytic = in.grad();
        xt::xarray<double>& x = in.mutable_value();
        for (std::size_t j = 0; j < x.size(); ++j) {
            const double original = x.data()[j];
            const double h = step_scale * std::max(1.0, std::abs(original));
            x.data()[j] = original + h;
            const xt::xarray<double> plus = f(inputs).value();
            x.data()[j] = original - h;
            const xt::xarray<double> minus = f(inputs).value();
            x.data()[j] = original;
            const double numeric = project(plus - minus, r) / (2.0 * h);
            const double a = analytic.data()[j];
            const double err = std::abs(a - numeric) / std::max({1.0, std::abs(a), std::abs(numeric)});
            if (!(err <= results[k].worst_error)) {  // also catches NaN
                results[k] = {std::isnan(err) ? std::numeric_limits<double>::infinity() : err, j, a, numeric};
            }
        }
    }
    return results;
}

}  // namespace xgrad
