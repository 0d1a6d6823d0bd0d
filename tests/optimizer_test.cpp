// Adam and SGD update every element of every parameter in one parallel pass (layers/adam.cpp,
// layers/sgd.cpp). Property: their parameters, moments and momentum buffers after several steps are
// those of torch's per-operation form (mul_, add_, addcmul_, addcdiv_), written below with xtensor
// expressions in torch's order, bit for bit, in float and double, at 1 and 2 threads, over drawn
// lists of tensors: small ones, empty ones, ones without a gradient, and (one case in five)
// tensors larger than a piece (layers/parameter_pieces.hpp), which split between threads. The
// hand-computed steps and torch's golden steps are in layers_test and golden_layers_test.
#include <gtest/gtest.h>
#include <rapidcheck/gtest.h>

#include <cmath>
#include <cstddef>
#include <cstring>
#include <iomanip>
#include <limits>
#include <optional>
#include <random>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include <tbb/global_control.h>
#include <xtensor/xmath.hpp>

#include "layers/adam.hpp"
#include "layers/parameter_pieces.hpp"
#include "layers/sgd.hpp"
#include "tests/generators.hpp"

namespace {

using xgrad::Var;
using xgrad_test::uniformIn;

template <class T>
void expect_same_bits(const xt::xarray<T>& actual, const xt::xarray<T>& expected, const std::string& what) {
    RC_ASSERT(actual.shape() == expected.shape());
    if (std::memcmp(actual.data(), expected.data(), actual.size() * sizeof(T)) != 0) {
        std::size_t i = 0;
        while (std::memcmp(actual.data() + i, expected.data() + i, sizeof(T)) == 0) ++i;
        std::ostringstream message;
        message << std::setprecision(std::numeric_limits<T>::max_digits10) << what << ": element " << i << " of "
                << actual.size() << " is " << actual.data()[i] << ", torch's form gives " << expected.data()[i];
        RC_FAIL(message.str());
    }
}

// The sizes of a drawn list of parameters: 1 to 5 tensors of up to 40 elements (empty ones
// included), or, one case in five, one of them past a piece.
std::vector<std::size_t> draw_sizes() {
    auto sizes = *rc::gen::container<std::vector<std::size_t>>(*uniformIn<std::size_t>(1, 6), uniformIn<std::size_t>(0, 41));
    if (*uniformIn(0, 5) == 0) sizes[0] = *uniformIn<std::size_t>(xgrad::piece_elements + 1, 3 * xgrad::piece_elements);
    return sizes;
}

template <class T>
xt::xarray<T> normal(std::size_t size, std::mt19937& rng) {
    std::normal_distribution<T> dist;
    xt::xarray<T> a = xt::xarray<T>::from_shape({size});
    for (auto& v : a) v = dist(rng);
    return a;
}

// p's gradient becomes g exactly: d sum(p · g) / dp = 1 · g.
template <class T>
void give_gradient(Var<T>& p, const xt::xarray<T>& g) {
    xgrad::sum(p * Var<T>(g)).backward();
}

// The parameters, and which of them get a gradient on every step (the others are skipped).
template <class T>
struct Parameters {
    std::vector<Var<T>> vars;
    std::vector<xt::xarray<T>> reference;
    std::vector<bool> trained;
    std::mt19937 rng;

    Parameters(const std::vector<std::size_t>& sizes, unsigned seed) : rng(seed) {
        for (std::size_t size : sizes) {
            reference.push_back(normal<T>(size, rng));
            vars.emplace_back(reference.back(), true);
            trained.push_back(std::bernoulli_distribution(0.8)(rng));
        }
    }

    // Gradients for this step, given to the trained parameters; returns them (empty for the others).
    std::vector<xt::xarray<T>> give_gradients() {
        std::vector<xt::xarray<T>> grads;
        for (std::size_t i = 0; i < vars.size(); ++i) {
            vars[i].zero_grad();
            if (!trained[i]) {
                grads.emplace_back();
                continue;
            }
            grads.push_back(normal<T>(vars[i].value().size(), rng));
            give_gradient(vars[i], grads.back());
        }
        return grads;
    }
};

template <class T>
void adam_matches_torchs_form() {
    const auto sizes = draw_sizes();
    const xgrad::AdamOptions options{.lr = *rc::gen::element(1e-3, 0.1),
                                     .betas = {*rc::gen::element(0.9, 0.5), *rc::gen::element(0.999, 0.9)},
                                     .eps = *rc::gen::element(1e-8, 1e-3),
                                     .weight_decay = *rc::gen::element(0.0, 0.01)};
    tbb::global_control threads(tbb::global_control::max_allowed_parallelism, *uniformIn<std::size_t>(1, 3));
    Parameters<T> params(sizes, *rc::gen::arbitrary<unsigned>());
    xgrad::Adam<T> adam(params.vars, options);
    const auto [beta1, beta2] = options.betas;
    std::vector<xt::xarray<T>> m(sizes.size()), v(sizes.size());
    std::vector<int> steps(sizes.size(), 0);
    for (int step = 0; step < 3; ++step) {
        const auto grads = params.give_gradients();
        adam.step();
        for (std::size_t i = 0; i < sizes.size(); ++i) {
            if (!params.trained[i]) continue;
            xt::xarray<T>& p = params.reference[i];
            if (steps[i]++ == 0) m[i] = v[i] = xt::zeros<T>(p.shape());
            const xt::xarray<T> g = options.weight_decay != 0.0 ? xt::xarray<T>(grads[i] + T(options.weight_decay) * p) : grads[i];
            m[i] = m[i] * T(beta1) + T(1.0 - beta1) * g;
            v[i] = v[i] * T(beta2) + T(1.0 - beta2) * g * g;
            const double t = steps[i];
            const double step_size = options.lr / (1.0 - std::pow(beta1, t));
            const double correction2_sqrt = std::sqrt(1.0 - std::pow(beta2, t));
            p = p + T(-step_size) * m[i] / (xt::sqrt(v[i]) / T(correction2_sqrt) + T(options.eps));
            const std::string where = "parameter " + std::to_string(i) + " after step " + std::to_string(step + 1);
            expect_same_bits(params.vars[i].value(), p, where);
            expect_same_bits(adam.state()[i].exp_avg, m[i], "exp_avg of " + where);
            expect_same_bits(adam.state()[i].exp_avg_sq, v[i], "exp_avg_sq of " + where);
        }
    }
    for (std::size_t i = 0; i < sizes.size(); ++i) RC_ASSERT(adam.state()[i].step == steps[i]);
}

template <class T>
void sgd_matches_torchs_form() {
    const auto sizes = draw_sizes();
    xgrad::SgdOptions options{.lr = *rc::gen::element(0.1, 0.01),
                              .momentum = *rc::gen::element(0.0, 0.9),
                              .dampening = *rc::gen::element(0.0, 0.1),
                              .weight_decay = *rc::gen::element(0.0, 0.01)};
    options.nesterov = options.momentum > 0.0 && options.dampening == 0.0 && *rc::gen::arbitrary<bool>();
    tbb::global_control threads(tbb::global_control::max_allowed_parallelism, *uniformIn<std::size_t>(1, 3));
    Parameters<T> params(sizes, *rc::gen::arbitrary<unsigned>());
    xgrad::SGD<T> sgd(params.vars, options);
    std::vector<std::optional<xt::xarray<T>>> buffers(sizes.size());
    for (int step = 0; step < 3; ++step) {
        const auto grads = params.give_gradients();
        sgd.step();
        for (std::size_t i = 0; i < sizes.size(); ++i) {
            if (!params.trained[i]) continue;
            xt::xarray<T>& p = params.reference[i];
            xt::xarray<T> d = options.weight_decay != 0.0 ? xt::xarray<T>(grads[i] + T(options.weight_decay) * p) : grads[i];
            const std::string where = "parameter " + std::to_string(i) + " after step " + std::to_string(step + 1);
            if (options.momentum != 0.0) {
                if (!buffers[i]) {
                    buffers[i] = d;
                } else {
                    *buffers[i] = *buffers[i] * T(options.momentum) + T(1.0 - options.dampening) * d;
                }
                d = options.nesterov ? xt::xarray<T>(d + T(options.momentum) * *buffers[i]) : *buffers[i];
                RC_ASSERT(sgd.momentum_buffers()[i].has_value());
                expect_same_bits(*sgd.momentum_buffers()[i], *buffers[i], "momentum buffer of " + where);
            } else {
                RC_ASSERT(!sgd.momentum_buffers()[i].has_value());
            }
            p = p - T(options.lr) * d;
            expect_same_bits(params.vars[i].value(), p, where);
        }
    }
}

RC_GTEST_PROP(Adam, OnePassGivesTorchsBitsInFloat, ()) { adam_matches_torchs_form<float>(); }
RC_GTEST_PROP(Adam, OnePassGivesTorchsBitsInDouble, ()) { adam_matches_torchs_form<double>(); }
RC_GTEST_PROP(SGD, OnePassGivesTorchsBitsInFloat, ()) { sgd_matches_torchs_form<float>(); }
RC_GTEST_PROP(SGD, OnePassGivesTorchsBitsInDouble, ()) { sgd_matches_torchs_form<double>(); }

// The state is writable (a checkpoint loader fills it): moments or a buffer of another shape
// than their parameter's are an error naming the parameter, not a write past its end.
TEST(Adam, MomentsOfAnotherShapeAreAnErrorNamingTheParameter) {
    Var<double> a(xt::xarray<double>{1.0}, true), b(xt::xarray<double>{1.0, 2.0}, true);
    xgrad::Adam<double> adam({a, b});
    adam.state()[1] = {1, xt::zeros<double>({3}), xt::zeros<double>({3})};
    give_gradient(b, xt::xarray<double>{1.0, 1.0});
    try {
        adam.step();
        FAIL() << "no error";
    } catch (const std::invalid_argument& e) {
        EXPECT_NE(std::string(e.what()).find("parameter 1"), std::string::npos) << e.what();
    }
    EXPECT_EQ(b.value(), (xt::xarray<double>{1.0, 2.0})) << "nothing written";
}

TEST(SGD, AMomentumBufferOfAnotherShapeIsAnErrorNamingTheParameter) {
    Var<double> a(xt::xarray<double>{1.0, 2.0}, true);
    xgrad::SGD<double> sgd({a}, {.lr = 0.1, .momentum = 0.9});
    sgd.momentum_buffers()[0] = xt::zeros<double>({5});
    give_gradient(a, xt::xarray<double>{1.0, 1.0});
    EXPECT_THROW(sgd.step(), std::invalid_argument);
    EXPECT_EQ(a.value(), (xt::xarray<double>{1.0, 2.0})) << "nothing written";
}

}  // namespace
