// Adam and SGD update every element of every parameter in one parallel pass (layers/adam.cpp,
// layers/sgd.cpp). Property: their parameters, moments and momentum buffers after several steps are
// those of torch's per-operation form (mul_, add_, addcmul_, addcdiv_, each rounded on its own as
// in torch's scalar code), written below with xtensor expressions in torch's order, bit for bit,
// in float and double, at 1 and 2 threads, over drawn lists of tensors: small ones, empty ones,
// ones that get no gradient at some steps, a tensor listed twice (tied weights, stepped once per
// listing in list order), values of ±0, ±inf, NaN and subnormals, and (one case in five) tensors
// larger than a piece (layers/parameter_pieces.hpp), in half of those large enough for the pieces
// to split between threads. Refused steps.
// The hand-computed steps and torch's golden steps are in layers_test and golden_layers_test.
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
#include <xtensor/xbuilder.hpp>
#include <xtensor/xmath.hpp>

#include "layers/adam.hpp"
#include "layers/parameter_pieces.hpp"
#include "layers/sgd.hpp"
#include "tests/generators.hpp"

namespace {

using xgrad::Var;
using xgrad_test::uniformIn;

// Bit for bit, but any NaN for a NaN: which operand's payload an operation passes on is the
// compiler's choice of operand order, not the formula's.
template <class T>
void expect_same_bits(const xt::xarray<T>& actual, const xt::xarray<T>& expected, const std::string& what) {
    RC_ASSERT(actual.shape() == expected.shape());
    for (std::size_t i = 0; i < actual.size(); ++i) {
        const T a = actual.data()[i], e = expected.data()[i];
        if (std::memcmp(&a, &e, sizeof(T)) == 0 || (std::isnan(a) && std::isnan(e))) continue;
        std::ostringstream message;
        message << std::setprecision(std::numeric_limits<T>::max_digits10) << what << ": element " << i << " of "
                << actual.size() << " is " << a << ", the per-operation form gives " << e;
        RC_FAIL(message.str());
    }
}

// The sizes of a drawn list of tensors: 1 to 5 of up to 40 elements (empty ones included), or,
// one case in five, one of them past a piece, and in half of those past a parallel pass's least
// size, so that its pieces run in parallel.
std::vector<std::size_t> draw_sizes() {
    using xgrad::parallel_pass_elements, xgrad::piece_elements;
    auto sizes = *rc::gen::container<std::vector<std::size_t>>(*uniformIn<std::size_t>(1, 6), uniformIn<std::size_t>(0, 41));
    if (*uniformIn(0, 5) == 0) {
        sizes[0] = *rc::gen::arbitrary<bool>()
                       ? *uniformIn<std::size_t>(piece_elements + 1, 3 * piece_elements)
                       : *uniformIn<std::size_t>(parallel_pass_elements, parallel_pass_elements + 2 * piece_elements);
    }
    return sizes;
}

// Normal values, with (where `special`) one in eight of ±0, ±inf, NaN, a subnormal or a large one.
template <class T>
xt::xarray<T> draw_values(std::size_t size, bool special, std::mt19937& rng) {
    constexpr T specials[] = {T(0), -T(0), std::numeric_limits<T>::infinity(), -std::numeric_limits<T>::infinity(),
                              std::numeric_limits<T>::quiet_NaN(), std::numeric_limits<T>::denorm_min() * 3, T(1e30)};
    std::normal_distribution<T> normal;
    std::uniform_int_distribution<std::size_t> pick(0, 8 * std::size(specials) - 1);
    xt::xarray<T> a = xt::xarray<T>::from_shape({size});
    for (auto& v : a) {
        const std::size_t k = pick(rng);
        v = special && k < std::size(specials) ? specials[k] : normal(rng);
    }
    return a;
}

// p's gradient becomes g exactly: d sum(p · g) / dp = 1 · g.
template <class T>
void give_gradient(Var<T>& p, const xt::xarray<T>& g) {
    xgrad::sum(p * Var<T>(g)).backward();
}

// A drawn parameter list, as an optimizer gets it: distinct tensors, of which (one case in four)
// one is listed twice, as a layer registered twice lists its parameters; and their values as
// the per-operation form computes them, one per tensor.
template <class T>
struct Parameters {
    std::vector<Var<T>> tensors;
    std::vector<std::size_t> tensor_of;  // per listing
    std::vector<xt::xarray<T>> reference;
    bool special;
    std::mt19937 rng;

    Parameters() : special(*uniformIn(0, 3) == 0), rng(*rc::gen::arbitrary<unsigned>()) {
        for (std::size_t size : draw_sizes()) {
            reference.push_back(draw_values<T>(size, special, rng));
            tensors.emplace_back(reference.back(), true);
            tensor_of.push_back(tensors.size() - 1);
        }
        if (*uniformIn(0, 4) == 0) {
            const std::size_t tied = *uniformIn<std::size_t>(0, tensors.size());
            tensor_of.insert(tensor_of.begin() + static_cast<std::ptrdiff_t>(*uniformIn<std::size_t>(tied + 1, tensor_of.size() + 1)), tied);
        }
    }

    std::vector<Var<T>> listing() const {
        std::vector<Var<T>> list;
        for (std::size_t t : tensor_of) list.push_back(tensors[t]);
        return list;
    }

    // This step's gradients, one per tensor; each tensor gets one (or, one time in five, none,
    // so that the optimizer skips it) drawn anew at every step.
    std::vector<std::optional<xt::xarray<T>>> give_gradients() {
        std::vector<std::optional<xt::xarray<T>>> grads(tensors.size());
        for (std::size_t t = 0; t < tensors.size(); ++t) {
            tensors[t].zero_grad();
            if (std::bernoulli_distribution(0.2)(rng)) continue;
            grads[t] = draw_values<T>(tensors[t].value().size(), special, rng);
            give_gradient(tensors[t], *grads[t]);
        }
        return grads;
    }

    std::string where(std::size_t listing, int step) const {
        return "listing " + std::to_string(listing) + " (tensor " + std::to_string(tensor_of[listing]) + ") after step " +
               std::to_string(step + 1);
    }
};

template <class T>
void adam_matches_the_per_operation_form() {
    const xgrad::AdamOptions options{.lr = *rc::gen::element(1e-3, 0.1),
                                     .betas = {*rc::gen::element(0.9, 0.5), *rc::gen::element(0.999, 0.9)},
                                     .eps = *rc::gen::element(1e-8, 1e-3),
                                     .weight_decay = *rc::gen::element(0.0, 0.01)};
    tbb::global_control threads(tbb::global_control::max_allowed_parallelism, *uniformIn<std::size_t>(1, 3));
    Parameters<T> params;
    xgrad::Adam<T> adam(params.listing(), options);
    const auto [beta1, beta2] = options.betas;
    const std::size_t listed = params.tensor_of.size();
    std::vector<xt::xarray<T>> m(listed), v(listed);
    std::vector<int> steps(listed, 0);
    for (int step = 0; step < 3; ++step) {
        const auto grads = params.give_gradients();
        adam.step();
        for (std::size_t i = 0; i < listed; ++i) {  // in list order: a tensor listed twice steps twice
            const auto& grad = grads[params.tensor_of[i]];
            if (!grad) continue;
            xt::xarray<T>& p = params.reference[params.tensor_of[i]];
            if (steps[i]++ == 0) m[i] = v[i] = xt::zeros<T>(p.shape());
            const xt::xarray<T> g = options.weight_decay != 0.0 ? xt::xarray<T>(*grad + T(options.weight_decay) * p) : *grad;
            m[i] = m[i] * T(beta1) + T(1.0 - beta1) * g;
            v[i] = v[i] * T(beta2) + T(1.0 - beta2) * g * g;
            const double t = steps[i];
            const double step_size = options.lr / (1.0 - std::pow(beta1, t));
            const double correction2_sqrt = std::sqrt(1.0 - std::pow(beta2, t));
            p = p + T(-step_size) * m[i] / (xt::sqrt(v[i]) / T(correction2_sqrt) + T(options.eps));
            expect_same_bits(adam.state()[i].exp_avg, m[i], "exp_avg of " + params.where(i, step));
            expect_same_bits(adam.state()[i].exp_avg_sq, v[i], "exp_avg_sq of " + params.where(i, step));
        }
        for (std::size_t t = 0; t < params.tensors.size(); ++t) {
            expect_same_bits(params.tensors[t].value(), params.reference[t], "tensor " + std::to_string(t));
        }
    }
    for (std::size_t i = 0; i < listed; ++i) RC_ASSERT(adam.state()[i].step == steps[i]);
}

template <class T>
void sgd_matches_the_per_operation_form() {
    xgrad::SgdOptions options{.lr = *rc::gen::element(0.1, 0.01),
                              .momentum = *rc::gen::element(0.0, 0.9),
                              .dampening = *rc::gen::element(0.0, 0.1),
                              .weight_decay = *rc::gen::element(0.0, 0.01)};
    options.nesterov = options.momentum > 0.0 && options.dampening == 0.0 && *rc::gen::arbitrary<bool>();
    tbb::global_control threads(tbb::global_control::max_allowed_parallelism, *uniformIn<std::size_t>(1, 3));
    Parameters<T> params;
    xgrad::SGD<T> sgd(params.listing(), options);
    const std::size_t listed = params.tensor_of.size();
    std::vector<std::optional<xt::xarray<T>>> buffers(listed);
    for (int step = 0; step < 3; ++step) {
        const auto grads = params.give_gradients();
        sgd.step();
        for (std::size_t i = 0; i < listed; ++i) {
            const auto& grad = grads[params.tensor_of[i]];
            if (!grad) continue;
            xt::xarray<T>& p = params.reference[params.tensor_of[i]];
            xt::xarray<T> d = options.weight_decay != 0.0 ? xt::xarray<T>(*grad + T(options.weight_decay) * p) : *grad;
            if (options.momentum != 0.0) {
                if (!buffers[i]) {
                    buffers[i] = d;
                } else {
                    *buffers[i] = *buffers[i] * T(options.momentum) + T(1.0 - options.dampening) * d;
                }
                d = options.nesterov ? xt::xarray<T>(d + T(options.momentum) * *buffers[i]) : *buffers[i];
                RC_ASSERT(sgd.momentum_buffers()[i].has_value());
                expect_same_bits(*sgd.momentum_buffers()[i], *buffers[i], "momentum buffer of " + params.where(i, step));
            } else {
                RC_ASSERT(!sgd.momentum_buffers()[i].has_value());
            }
            p = p - T(options.lr) * d;
        }
        for (std::size_t t = 0; t < params.tensors.size(); ++t) {
            expect_same_bits(params.tensors[t].value(), params.reference[t], "tensor " + std::to_string(t));
        }
    }
}

RC_GTEST_PROP(Adam, OnePassGivesThePerOperationFormsBitsInFloat, ()) { adam_matches_the_per_operation_form<float>(); }
RC_GTEST_PROP(Adam, OnePassGivesThePerOperationFormsBitsInDouble, ()) { adam_matches_the_per_operation_form<double>(); }
RC_GTEST_PROP(SGD, OnePassGivesThePerOperationFormsBitsInFloat, ()) { sgd_matches_the_per_operation_form<float>(); }
RC_GTEST_PROP(SGD, OnePassGivesThePerOperationFormsBitsInDouble, ()) { sgd_matches_the_per_operation_form<double>(); }

// A tensor listed twice is stepped twice, one listing after the other, also when its pieces
// are split between two threads. Both listings in one parallel pass would race: an update read
// before the other's write would be lost here, when the threads overlap, and the
// ThreadSanitizer job (setup.sh tsan) reports the race whether or not they do.
TEST(Optimizers, ATensorListedTwiceIsSteppedOnceForEachListingAtTwoThreads) {
    tbb::global_control threads(tbb::global_control::max_allowed_parallelism, 2);
    const std::size_t size = xgrad::parallel_pass_elements + 8 * xgrad::piece_elements;
    Var<float> p(xt::zeros<float>({size}), true);
    xgrad::SGD<float> sgd({p, p}, {.lr = 1.0});
    for (int step = 1; step <= 20; ++step) {
        p.zero_grad();
        give_gradient(p, xt::xarray<float>(xt::ones<float>({size})));
        sgd.step();
        ASSERT_EQ(p.value(), xt::xarray<float>(xt::full_like(p.value(), -2.0f * static_cast<float>(step))))
            << "step " << step;
    }
}

// A step refused names what was wrong, before it has changed anything: the state of the
// parameters listed before the wrong one included.
template <class Optimizer>
void expect_refused_untouched(Optimizer& optimizer, const std::vector<Var<double>>& params, const std::string& what) {
    std::vector<xt::xarray<double>> before;
    for (const auto& p : params) before.push_back(p.value());
    try {
        optimizer.step();
        FAIL() << "no error";
    } catch (const std::invalid_argument& e) {
        EXPECT_NE(std::string(e.what()).find(what), std::string::npos) << e.what();
    }
    for (std::size_t i = 0; i < params.size(); ++i) EXPECT_EQ(params[i].value(), before[i]) << "parameter " << i;
}

// The state is writable (a checkpoint loader fills it), and so is a value's shape: moments, a
// buffer or a gradient of another shape than their parameter's are an error, not a read or a
// write past its end.
TEST(Adam, MomentsOfAnotherShapeAreAnErrorNamingTheParameter) {
    Var<double> a(xt::xarray<double>{1.0}, true), b(xt::xarray<double>{1.0, 2.0}, true);
    xgrad::Adam<double> adam({a, b});
    adam.state()[1] = {1, xt::zeros<double>({3}), xt::zeros<double>({3})};
    give_gradient(a, xt::xarray<double>{1.0});
    give_gradient(b, xt::xarray<double>{1.0, 1.0});
    expect_refused_untouched(adam, {a, b}, "the exp_avg of parameter 1 has shape (3), the parameter (2)");
    EXPECT_EQ(adam.state()[0].step, 0) << "parameter 0's step not counted";
}

TEST(SGD, AMomentumBufferOfAnotherShapeIsAnErrorNamingTheParameter) {
    Var<double> a(xt::xarray<double>{1.0}, true), b(xt::xarray<double>{1.0, 2.0}, true);
    xgrad::SGD<double> sgd({a, b}, {.lr = 0.1, .momentum = 0.9});
    sgd.momentum_buffers()[1] = xt::zeros<double>({5});
    give_gradient(a, xt::xarray<double>{1.0});
    give_gradient(b, xt::xarray<double>{1.0, 1.0});
    expect_refused_untouched(sgd, {a, b}, "the momentum buffer of parameter 1 has shape (5)");
    EXPECT_FALSE(sgd.momentum_buffers()[0].has_value()) << "parameter 0's buffer not started";
}

TEST(Optimizers, AGradientOfAnotherShapeThanItsParameterIsAnError) {
    Var<double> a(xt::xarray<double>{1.0, 2.0, 3.0}, true);
    give_gradient(a, xt::xarray<double>{1.0, 1.0, 1.0});
    a.mutable_value() = xt::xarray<double>{1.0, 2.0};  // the value replaced after the backward
    xgrad::Adam<double> adam({a});
    expect_refused_untouched(adam, {a}, "the gradient of parameter 0 has shape (3), the parameter (2)");
    xgrad::SGD<double> sgd({a}, {.lr = 0.1});
    expect_refused_untouched(sgd, {a}, "the gradient of parameter 0 has shape (3)");
}

}  // namespace
