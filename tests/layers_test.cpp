// Layers, the loss, the optimizers and the inits: gradients of every layer and of the loss
// against central differences (double, rapidcheck); Conv2d and MaxPool2d against direct
// loops; the shape errors a user sees (the seed CNN's fc1 among them); Dropout's modes; and
// SGD / Adam against hand-computed steps; Residual's skip connection.
#include <gtest/gtest.h>
#include <rapidcheck/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <memory>
#include <ostream>
#include <random>
#include <stdexcept>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include <tbb/global_control.h>
#include <xtensor/xmath.hpp>
#include <xtensor/xrandom.hpp>

#include "layers/activations.hpp"
#include "layers/adam.hpp"
#include "layers/conv2d.hpp"
#include "layers/cross_entropy.hpp"
#include "layers/distribution_noise.hpp"
#include "layers/dropout.hpp"
#include "layers/init.hpp"
#include "layers/linear.hpp"
#include "layers/max_pool2d.hpp"
#include "layers/normalization/batch_norm.hpp"
#include "layers/residual.hpp"
#include "layers/sequential.hpp"
#include "layers/sgd.hpp"
#include "layers/short_filter_gradient.hpp"
#include "tests/generators.hpp"

namespace {

using namespace xgrad_test;
using xgrad::Size2;

using Labels = xt::xarray<std::int64_t>;

// ---------------------------------------------------------------------------------------------
// Generated cases and direct-loop references

struct WindowCase {
    std::size_t n, c, out_c, h, w;
    Size2 kernel{1}, stride{1}, padding{0};
    bool bias = true;
};

std::ostream& operator<<(std::ostream& os, const WindowCase& k) {
    return os << "N=" << k.n << " C=" << k.c << " out_C=" << k.out_c << " H=" << k.h << " W=" << k.w
              << " kernel=" << k.kernel.str() << " stride=" << k.stride.str() << " padding=" << k.padding.str()
              << " bias=" << k.bias;
}

// Small windowed-layer cases: kernels 1..3, strides 1..3, padding 0..max_padding, inputs from the
// smallest that holds one window up to 7.
rc::Gen<WindowCase> genWindowCase(std::size_t max_padding) {
    return rc::gen::exec([max_padding] {
        WindowCase k;
        k.n = *uniformIn<std::size_t>(1, 3);
        k.c = *uniformIn<std::size_t>(1, 4);
        k.out_c = *uniformIn<std::size_t>(1, 4);
        k.kernel = Size2(*uniformIn<std::size_t>(1, 4), *uniformIn<std::size_t>(1, 4));
        k.stride = Size2(*uniformIn<std::size_t>(1, 4), *uniformIn<std::size_t>(1, 4));
        k.padding = Size2(*uniformIn<std::size_t>(0, max_padding + 1), *uniformIn<std::size_t>(0, max_padding + 1));
        k.h = *uniformIn<std::size_t>(k.kernel.h > 2 * k.padding.h ? k.kernel.h - 2 * k.padding.h : 1, 8);
        k.w = *uniformIn<std::size_t>(k.kernel.w > 2 * k.padding.w ? k.kernel.w - 2 * k.padding.w : 1, 8);
        k.bias = *rc::gen::arbitrary<bool>();
        return k;
    });
}

// A window case for Conv2d: one case in ten has 17 to 40 samples (with at most 2 input channels
// and 4 × 4 images, to keep finite differences cheap), so that groups of samples the weight
// gradient is summed in (layers/conv2d.cpp: 16 groups at most) hold two or three of them, on
// filters short (fewer than 16 weights) and long (2 × 3 × 3).
rc::Gen<WindowCase> genConvCase() {
    return rc::gen::exec([] {
        WindowCase k = *genWindowCase(2);
        if (*uniformIn<int>(0, 10) == 0) {
            k.n = *uniformIn<std::size_t>(17, 41);
            k.c = std::min<std::size_t>(k.c, 2);
            k.h = std::min<std::size_t>(k.h, 4);
            k.w = std::min<std::size_t>(k.w, 4);
        }
        RC_TAG(k.n > 16 ? "samples > 16" : "samples <= 2");
        return k;
    });
}

std::size_t outSize(std::size_t in, std::size_t kernel, std::size_t stride, std::size_t padding) {
    return (in + 2 * padding - kernel) / stride + 1;
}

struct ConvReference {
    Array y, dx, dw, db;
};

// The definition of the convolution and of its three gradients for output gradient gy, as loops.
ConvReference referenceConv(const WindowCase& k, const Array& x, const Array& w, const Array& b, const Array& gy) {
    const std::size_t oh = outSize(k.h, k.kernel.h, k.stride.h, k.padding.h);
    const std::size_t ow = outSize(k.w, k.kernel.w, k.stride.w, k.padding.w);
    ConvReference r{xt::zeros<double>({k.n, k.out_c, oh, ow}), xt::zeros<double>(x.shape()),
                    xt::zeros<double>(w.shape()), xt::zeros<double>({k.out_c})};
    for (std::size_t n = 0; n < k.n; ++n) {
        for (std::size_t o = 0; o < k.out_c; ++o) {
            for (std::size_t p = 0; p < oh; ++p) {
                for (std::size_t q = 0; q < ow; ++q) {
                    double s = k.bias ? b(o) : 0.0;
                    const double g = gy(n, o, p, q);
                    r.db(o) += g;
                    for (std::size_t c = 0; c < k.c; ++c) {
                        for (std::size_t i = 0; i < k.kernel.h; ++i) {
                            for (std::size_t j = 0; j < k.kernel.w; ++j) {
                                const auto ih = static_cast<std::ptrdiff_t>(p * k.stride.h + i) - static_cast<std::ptrdiff_t>(k.padding.h);
                                const auto iw = static_cast<std::ptrdiff_t>(q * k.stride.w + j) - static_cast<std::ptrdiff_t>(k.padding.w);
                                if (ih < 0 || iw < 0 || ih >= static_cast<std::ptrdiff_t>(k.h) || iw >= static_cast<std::ptrdiff_t>(k.w)) continue;
                                const auto ihu = static_cast<std::size_t>(ih), iwu = static_cast<std::size_t>(iw);
                                s += w(o, c, i, j) * x(n, c, ihu, iwu);
                                r.dw(o, c, i, j) += g * x(n, c, ihu, iwu);
                                r.dx(n, c, ihu, iwu) += g * w(o, c, i, j);
                            }
                        }
                    }
                    r.y(n, o, p, q) = s;
                }
            }
        }
    }
    return r;
}

xgrad::Conv2d<double> makeConv(const WindowCase& k) {
    return xgrad::Conv2d<double>(k.c, k.out_c, k.kernel, k.stride, k.padding, k.bias);
}

// Runs the layer forward and backward with seed gy and compares with the direct loops.
void checkConvAgainstReference(const WindowCase& k, const Array& x, const Array& w, const Array& b, const Array& gy) {
    auto conv = makeConv(k);
    conv.weight().mutable_value() = w;
    if (k.bias) conv.bias()->mutable_value() = b;
    const Var<double> xv = leaf(x);
    const Var<double> y = conv(xv);
    const ConvReference ref = referenceConv(k, x, w, b, gy);
    checkClose(y.value(), ref.y, 1e-12, "Conv2d output");
    y.backward(gy);
    checkClose(xv.grad(), ref.dx, 1e-12, "Conv2d dx");
    checkClose(conv.weight().grad(), ref.dw, 1e-12, "Conv2d dW");
    if (k.bias) checkClose(conv.bias()->grad(), ref.db, 1e-12, "Conv2d db");
}

// Fails unless f throws E whose message contains every part.
template <class E, class F>
void expectError(F f, const std::vector<std::string>& parts) {
    try {
        f();
    } catch (const E& e) {
        const std::string message = e.what();
        for (const auto& part : parts) EXPECT_NE(message.find(part), std::string::npos) << message << "\nlacks: " << part;
        return;
    } catch (const std::exception& e) {
        FAIL() << "unexpected exception: " << e.what();
    }
    FAIL() << "no exception";
}

// ---------------------------------------------------------------------------------------------
// Gradients against central differences

RC_GTEST_PROP(LayerGradients, Linear, ()) {
    const auto n = *uniformIn<std::size_t>(1, 5);
    const auto in = *uniformIn<std::size_t>(1, 6);
    const auto out = *uniformIn<std::size_t>(1, 6);
    const bool bias = *rc::gen::arbitrary<bool>();
    xgrad::Linear<double> fc(in, out, bias);
    fc.weight().mutable_value() = *genArray({out, in}, anywhere(-1, 1));
    std::vector<Var<double>> inputs{leaf(*genArray({n, in}, anywhere(-2, 2))), fc.weight()};
    if (bias) {
        fc.bias()->mutable_value() = *genArray({out}, anywhere(-1, 1));
        inputs.push_back(*fc.bias());
    }
    checkGradients([&](const std::vector<Var<double>>& v) { return fc(v[0]); }, inputs, "Linear");
}

RC_GTEST_PROP(LayerGradients, Conv2d, ()) {
    const WindowCase k = *genConvCase();
    auto conv = makeConv(k);
    conv.weight().mutable_value() = *genArray({k.out_c, k.c, k.kernel.h, k.kernel.w}, anywhere(-1, 1));
    std::vector<Var<double>> inputs{leaf(*genArray({k.n, k.c, k.h, k.w}, anywhere(-2, 2))), conv.weight()};
    if (k.bias) inputs.push_back(*conv.bias());
    checkGradients([&](const std::vector<Var<double>>& v) { return conv(v[0]); }, inputs, "Conv2d");
}

RC_GTEST_PROP(LayerGradients, MaxPool2d, ()) {
    const WindowCase k = *genWindowCase(0);
    xgrad::MaxPool2d<double> pool(k.kernel, k.stride);
    // Distinct values, far apart compared with the finite-difference step: no window's arg-max moves.
    const Var<double> x = leaf(*genDistinct({k.n, k.c, k.h, k.w}, 1.0 / 64));
    checkGradients([&](const std::vector<Var<double>>& v) { return pool(v[0]); }, {x}, "MaxPool2d");
}

RC_GTEST_PROP(LayerGradients, Activations, ()) {
    const Shape shape = *genShape();
    xgrad::ReLU<double> relu;
    xgrad::Sigmoid<double> sigmoid;
    xgrad::Tanh<double> tanh;
    checkGradients([&](const std::vector<Var<double>>& v) { return relu(v[0]); },
                   {leaf(*genArray(shape, awayFromZero(1.0 / 16, 3)))}, "ReLU");
    checkGradients([&](const std::vector<Var<double>>& v) { return sigmoid(v[0]); },
                   {leaf(*genArray(shape, anywhere(-4, 4)))}, "Sigmoid");
    checkGradients([&](const std::vector<Var<double>>& v) { return tanh(v[0]); },
                   {leaf(*genArray(shape, anywhere(-3, 3)))}, "Tanh");
}

RC_GTEST_PROP(LayerGradients, Flatten, ()) {
    const Shape shape = *genShape(2);
    xgrad::Flatten<double> flatten;
    const Var<double> x = leaf(*genArray(shape, anywhere(-2, 2)));
    RC_ASSERT(flatten(x).shape() == Shape({shape[0], x.size() / shape[0]}));
    checkGradients([&](const std::vector<Var<double>>& v) { return flatten(v[0]); }, {x}, "Flatten");
}

// The mask is fixed by building the layer with the same seed for every evaluation.
RC_GTEST_PROP(LayerGradients, DropoutWithFixedMask, ()) {
    const Shape shape = *genShape();
    const double p = *rc::gen::element(0.25, 0.5, 0.75);
    const auto seed = *rc::gen::arbitrary<std::uint64_t>();
    auto dropout = [&](const std::vector<Var<double>>& v) { return xgrad::Dropout<double>(p, seed)(v[0]); };
    checkGradients(dropout, {leaf(*genArray(shape, anywhere(-2, 2)))}, "Dropout");
}

// The noise is fixed the same way; any rank from 2 (the noise broadcasts over dims past C).
RC_GTEST_PROP(LayerGradients, DistributionNoiseWithFixedDraws, ()) {
    const Shape shape = *genShape(2);
    const auto seed = *rc::gen::arbitrary<std::uint64_t>();
    auto noise = [&](const std::vector<Var<double>>& v) { return xgrad::DistributionNoise<double>(seed)(v[0]); };
    checkGradients(noise, {leaf(*genArray(shape, anywhere(-2, 2)))}, "DistributionNoise");
}

RC_GTEST_PROP(LayerGradients, Sequential, ()) {
    const auto n = *uniformIn<std::size_t>(1, 4);
    const auto in = *uniformIn<std::size_t>(1, 5);
    const auto hidden = *uniformIn<std::size_t>(1, 5);
    xgrad::Sequential<double> net{std::make_shared<xgrad::Linear<double>>(in, hidden),
                                  std::make_shared<xgrad::Tanh<double>>(),
                                  std::make_shared<xgrad::Linear<double>>(hidden, 2),
                                  std::make_shared<xgrad::Sigmoid<double>>()};
    std::vector<Var<double>> inputs{leaf(*genArray({n, in}, anywhere(-2, 2)))};
    for (const auto& p : net.parameters()) inputs.push_back(p);
    checkGradients([&](const std::vector<Var<double>>& v) { return net(v[0]); }, inputs, "Sequential");
}

// The gradients of a Residual around `body`, in training mode, to x and to every parameter.
void checkResidualGradients(std::shared_ptr<xgrad::Sequential<double>> body, const Var<double>& x, const std::string& what) {
    xgrad::Residual<double> block(std::move(body));
    block.train();
    std::vector<Var<double>> inputs{x};
    for (const auto& p : block.parameters()) inputs.push_back(p);
    checkGradients([&](const std::vector<Var<double>>& v) { return block(v[0]); }, inputs, what);
}

RC_GTEST_PROP(LayerGradients, Residual, ()) {
    const auto n = *uniformIn<std::size_t>(1, 4);
    const auto width = *uniformIn<std::size_t>(1, 5);
    auto body = std::make_shared<xgrad::Sequential<double>>();
    body->add(std::make_shared<xgrad::Linear<double>>(width, width));
    body->add(std::make_shared<xgrad::Tanh<double>>());
    checkResidualGradients(body, leaf(*genArray({n, width}, anywhere(-2, 2))), "Residual(Linear, Tanh)");
}

// BN in training normalizes by the batch's own statistics, so every sample's output depends on
// every other's: the skip connection must add x's gradient to that coupled one. BN comes first,
// on x's distinct values (1/4 apart, so a channel's variance is at least 1/64): behind a random
// convolution a channel of two values could be nearly constant, where BN's gradient is too steep
// for finite differences.
RC_GTEST_PROP(LayerGradients, ResidualThroughBatchNormInTraining, ()) {
    const auto n = *uniformIn<std::size_t>(2, 4);
    const auto c = *uniformIn<std::size_t>(1, 3);
    const auto side = *uniformIn<std::size_t>(1, 4);
    auto body = std::make_shared<xgrad::Sequential<double>>();
    body->add(std::make_shared<xgrad::BatchNorm2d<double>>(c));
    body->add(std::make_shared<xgrad::Tanh<double>>());
    body->add(std::make_shared<xgrad::Conv2d<double>>(c, c, 3, 1, 1));
    checkResidualGradients(body, leaf(*genDistinct({n, c, side, side}, 0.25)), "Residual(BatchNorm2d, Tanh, Conv2d)");
}

RC_GTEST_PROP(LayerGradients, CrossEntropy, ()) {
    const auto n = *uniformIn<std::size_t>(1, 5);
    const auto k = *uniformIn<std::size_t>(1, 6);
    Labels labels = Labels::from_shape({n});
    for (auto& l : labels) l = *uniformIn<std::int64_t>(0, static_cast<std::int64_t>(k));
    checkGradients([&](const std::vector<Var<double>>& v) { return xgrad::cross_entropy(v[0], labels); },
                   {leaf(*genArray({n, k}, anywhere(-4, 4)))}, "cross_entropy");
}

// ---------------------------------------------------------------------------------------------
// Values against direct loops

RC_GTEST_PROP(Conv2d, MatchesDirectLoops, ()) {
    const WindowCase k = *genConvCase();
    const std::size_t oh = outSize(k.h, k.kernel.h, k.stride.h, k.padding.h);
    const std::size_t ow = outSize(k.w, k.kernel.w, k.stride.w, k.padding.w);
    checkConvAgainstReference(k, *genArray({k.n, k.c, k.h, k.w}, anywhere(-2, 2)),
                              *genArray({k.out_c, k.c, k.kernel.h, k.kernel.w}, anywhere(-1, 1)),
                              *genArray({k.out_c}, anywhere(-1, 1)), *genArray({k.n, k.out_c, oh, ow}, anywhere(-1, 1)));
}

// Past the thresholds a small case does not reach: a forward's and an input gradient's per-sample
// products large enough that gemm splits them into parts (32 × 10,000 × 27 multiply-adds,
// autodiff/blas.cpp), and a weight large enough (4,096 × 72) that its gradient is summed in fewer
// groups (14) than the 16 a batch of 17 could have. x is used a second time, so its gradient is the
// sum of two contributions.
TEST(Conv2d, LargeProductsAndLargeWeightsMatchDirectLoops) {
    for (const WindowCase& k : {WindowCase{3, 3, 32, 100, 100, Size2(3), Size2(1), Size2(1), true},
                                WindowCase{17, 8, 4096, 4, 4, Size2(3), Size2(1), Size2(1), true}}) {
        SCOPED_TRACE("N=" + std::to_string(k.n) + " out_channels=" + std::to_string(k.out_c));
        std::mt19937 rng(7);
        std::uniform_real_distribution<double> u(-1, 1);
        auto random = [&](const Shape& s) {
            Array a = Array::from_shape(s);
            for (auto& v : a) v = u(rng);
            return a;
        };
        const Array x = random({k.n, k.c, k.h, k.w});
        const Array w = random({k.out_c, k.c, 3, 3});
        const Array b = random({k.out_c});
        const Array gy = random({k.n, k.out_c, k.h, k.w});
        xgrad::Conv2d<double> conv(k.c, k.out_c, 3, 1, 1);
        conv.weight().mutable_value() = w;
        conv.bias()->mutable_value() = b;
        const Var<double> xv = leaf(x);
        const Var<double> y = conv(xv) + 0.5 * xgrad::sum(xv);
        ASSERT_EQ(y.shape(), Shape({k.n, k.out_c, k.h, k.w}));
        const ConvReference ref = referenceConv(k, x, w, b, gy);
        EXPECT_LT(xt::amax(xt::abs(y.value() - (ref.y + 0.5 * xt::sum(x)())))(), 1e-9);
        y.backward(gy);
        EXPECT_LT(xt::amax(xt::abs(xv.grad() - (ref.dx + 0.5 * xt::sum(gy)())))(), 1e-9);
        EXPECT_LT(xt::amax(xt::abs(conv.weight().grad() - ref.dw))() / xt::amax(xt::abs(ref.dw))(), 1e-12);
        EXPECT_LT(xt::amax(xt::abs(conv.bias()->grad() - ref.db))() / xt::amax(xt::abs(ref.db))(), 1e-12);
    }
}

// The weight gradient's groups of samples depend on the batch and the weight's size alone: 1 and
// 2 threads give the same bits, with 37 samples in 16 groups, with a weight large enough for fewer groups, and with
// short filters (layers/short_filter_gradient.hpp).
TEST(Conv2d, OneAndTwoThreadsGiveTheSameBits) {
    for (const auto& channels : {std::pair<std::size_t, std::size_t>{8, 8}, {8, 4096}, {1, 8}}) {
        const std::size_t in = channels.first, out = channels.second;
        SCOPED_TRACE("in_channels=" + std::to_string(in) + " out_channels=" + std::to_string(out));
        const auto run = [&](std::size_t threads) {
            const tbb::global_control limit(tbb::global_control::max_allowed_parallelism, threads);
            xgrad::Rng rng(3);
            xgrad::Conv2d<float> conv(in, out, 3, 1, 1, true, rng);
            xt::random::seed(5);
            const Var<float> x(xt::eval(xt::random::randn<float>(Shape{37, in, 6, 6})), true);
            const Var<float> y = conv(x);
            y.backward(xt::eval(xt::random::randn<float>(y.shape())));
            return std::vector<xt::xarray<float>>{y.value(), x.grad(), conv.weight().grad(), conv.bias()->grad()};
        };
        const auto one = run(1), two = run(2);
        for (std::size_t i = 0; i < one.size(); ++i) EXPECT_EQ(one[i], two[i]) << "result " << i << " (y, dx, dW, db)";
    }
}

// The weight gradient's kernel for short filters, at every filter length it serves, against the sums
// written out in double; planes with and without a partial vector at their end.
template <class T>
void checkShortFilterTerms(double tolerance) {
    const auto rows = *uniformIn<std::size_t>(1, xgrad::kShortFilterWeights);
    const auto out = *uniformIn<std::size_t>(1, 5);
    const auto plane = *uniformIn<std::size_t>(1, 70);
    const bool add = *rc::gen::arbitrary<bool>();
    const Array gy = *genArray({out, plane}, anywhere(-1, 1));
    const Array cols = *genArray({rows, plane}, anywhere(-1, 1));
    const Array before = *genArray({out, rows}, anywhere(-1, 1));
    const xt::xarray<T> gy_t = xt::cast<T>(gy), cols_t = xt::cast<T>(cols);
    xt::xarray<T> dw = xt::cast<T>(before);
    xgrad::add_short_filter_terms(gy_t.data(), cols_t.data(), out, rows, plane, add, dw.data());
    Array expected = add ? Array(xt::cast<double>(xt::cast<T>(before))) : Array(xt::zeros<double>({out, rows}));
    for (std::size_t o = 0; o < out; ++o) {
        for (std::size_t r = 0; r < rows; ++r) {
            for (std::size_t p = 0; p < plane; ++p) expected(o, r) += double(gy_t(o, p)) * double(cols_t(r, p));
        }
    }
    checkClose(xt::cast<double>(dw), expected, tolerance, "add_short_filter_terms");
}

RC_GTEST_PROP(ShortFilterGradient, MatchesDirectSums, ()) { checkShortFilterTerms<double>(1e-12); }
RC_GTEST_PROP(ShortFilterGradient, MatchesDirectSumsInFloat, ()) { checkShortFilterTerms<float>(1e-5); }

TEST(ShortFilterGradient, LongerFiltersAreRefused) {
    double gy = 0, cols = 0, dw = 0;
    expectError<std::invalid_argument>(
        [&] { xgrad::add_short_filter_terms(&gy, &cols, 1, xgrad::kShortFilterWeights, 1, false, &dw); },
        {"1 to 15 weights", "got 16"});
}

// With its weight or its input frozen, a convolution computes the other's gradient alone, as the
// direct loops do.
TEST(Conv2d, FrozenWeightOrInputLeavesTheOtherGradientAsTheDirectLoops) {
    const WindowCase k{5, 3, 4, 6, 6, Size2(3), Size2(1), Size2(1), true};
    xt::random::seed(9);
    const Array x = xt::random::randn<double>(Shape{k.n, k.c, k.h, k.w});
    const Array w = xt::random::randn<double>(Shape{k.out_c, k.c, 3, 3});
    const Array b = xt::random::randn<double>(Shape{k.out_c});
    const Array gy = xt::random::randn<double>(Shape{k.n, k.out_c, k.h, k.w});
    const ConvReference ref = referenceConv(k, x, w, b, gy);
    for (const bool freeze_weight : {true, false}) {
        SCOPED_TRACE(freeze_weight ? "weight frozen" : "input frozen");
        auto conv = makeConv(k);
        conv.weight().mutable_value() = w;
        conv.bias()->mutable_value() = b;
        conv.weight().set_requires_grad(!freeze_weight);
        const Var<double> xv(x, freeze_weight);
        conv(xv).backward(gy);
        if (freeze_weight) {
            EXPECT_LT(xt::amax(xt::abs(xv.grad() - ref.dx))(), 1e-12);
            EXPECT_FALSE(conv.weight().has_grad());
        } else {
            EXPECT_LT(xt::amax(xt::abs(conv.weight().grad() - ref.dw))(), 1e-12);
            EXPECT_FALSE(xv.has_grad());
        }
        EXPECT_LT(xt::amax(xt::abs(conv.bias()->grad() - ref.db))(), 1e-12);
    }
}

// A second backward through the retained graph adds the same gradients again: the backward keeps
// nothing of its own between calls.
TEST(Conv2d, BackwardTwiceThroughARetainedGraphAddsTheSameGradients) {
    xgrad::Conv2d<double> conv(3, 4, 3, 1, 1);
    const Var<double> x = leaf(xt::random::randn<double>({2, 3, 6, 6}));
    const Var<double> y = conv(x);
    const Array gy = xt::random::randn<double>(y.shape());
    y.backward(gy, true);
    const Array dx = x.grad(), dw = conv.weight().grad();
    y.backward(gy);
    EXPECT_LT(xt::amax(xt::abs(x.grad() - 2.0 * dx))(), 1e-12);
    EXPECT_LT(xt::amax(xt::abs(conv.weight().grad() - 2.0 * dw))(), 1e-12);
}

TEST(EmptyBatch, LayersGiveEmptyOutputsAndZeroParameterGradients) {
    xgrad::Linear<double> fc(3, 2);
    xgrad::Conv2d<double> conv(2, 4, 3, 1, 1);
    xgrad::Flatten<double> flatten;
    const Var<double> x = leaf(Array::from_shape({0, 2, 5, 5}));
    const Var<double> h = conv(x);
    EXPECT_EQ(h.shape(), Shape({0, 4, 5, 5}));
    EXPECT_EQ(flatten(h).shape(), Shape({0, 100}));
    const Var<double> y = fc(leaf(Array::from_shape({0, 3})));
    EXPECT_EQ(y.shape(), Shape({0, 2}));
    const Var<double> flat = flatten(h);
    flat.backward(Array::from_shape({0, 100}));
    y.backward(Array::from_shape({0, 2}));
    for (const auto& p : {conv.weight(), *conv.bias(), fc.weight(), *fc.bias()}) {
        EXPECT_EQ(p.grad(), Array(xt::zeros<double>(p.shape())));
    }
}

TEST(MaxPool2d, TiesGoToTheFirstMaximumAndNaNPropagates) {
    xgrad::MaxPool2d<double> pool(2);
    Array x = {{{{1.0, 1.0, 5.0, 2.0}, {1.0, 0.5, std::nan(""), 5.0}}}};
    const Var<double> xv = leaf(x);
    const Var<double> y = pool(xv);
    ASSERT_EQ(y.shape(), Shape({1, 1, 1, 2}));
    EXPECT_EQ(y.value()(0, 0, 0, 0), 1.0);
    EXPECT_TRUE(std::isnan(y.value()(0, 0, 0, 1)));
    y.backward(Array{{{{10.0, 20.0}}}});
    const Array expected = {{{{10.0, 0.0, 0.0, 0.0}, {0.0, 0.0, 20.0, 0.0}}}};
    EXPECT_EQ(xv.grad(), expected);
}

// torch's rule, element by element in row-major window order: y and the input gradient for gy.
std::pair<Array, Array> referenceMaxPool(const Array& x, Size2 kernel, Size2 stride, const Array& gy) {
    const std::size_t oh = outSize(x.shape(2), kernel.h, stride.h, 0), ow = outSize(x.shape(3), kernel.w, stride.w, 0);
    Array y = xt::zeros<double>({x.shape(0), x.shape(1), oh, ow});
    Array dx = xt::zeros<double>(x.shape());
    for (std::size_t n = 0; n < x.shape(0); ++n) {
        for (std::size_t c = 0; c < x.shape(1); ++c) {
            for (std::size_t p = 0; p < oh; ++p) {
                for (std::size_t q = 0; q < ow; ++q) {
                    std::size_t bi = p * stride.h, bj = q * stride.w;
                    for (std::size_t i = p * stride.h; i < p * stride.h + kernel.h; ++i) {
                        for (std::size_t j = q * stride.w; j < q * stride.w + kernel.w; ++j) {
                            if (x(n, c, i, j) > x(n, c, bi, bj) || std::isnan(x(n, c, i, j))) bi = i, bj = j;
                        }
                    }
                    y(n, c, p, q) = x(n, c, bi, bj);
                    dx(n, c, bi, bj) += gy(n, c, p, q);
                }
            }
        }
    }
    return {y, dx};
}

// Many ties and NaNs, through each path of the kernel: 2×2 windows at stride 2 (rows of up to 40
// outputs, past the 16 computed at once, odd sizes, and last rows that may not read past their
// end), other windows that tile the input (with rows and columns past the last window), and any
// windows; the input gradient written, or added to another's.
template <class T>
void checkTiesAndNaNs() {
    using Values = xt::xarray<T>;
    const int path = *uniformIn<int>(0, 3);
    Size2 kernel(2), stride(2);
    std::size_t h = 0, w = 0;
    if (path == 0) {
        h = *uniformIn<std::size_t>(2, 12);
        w = *uniformIn<std::size_t>(2, 81);
    } else if (path == 1) {
        kernel = Size2(*uniformIn<std::size_t>(1, 4), *uniformIn<std::size_t>(1, 4));
        stride = kernel;
        h = kernel.h * *uniformIn<std::size_t>(1, 5) + *uniformIn<std::size_t>(0, kernel.h);
        w = kernel.w * *uniformIn<std::size_t>(1, 9) + *uniformIn<std::size_t>(0, kernel.w);
    } else {
        kernel = Size2(*uniformIn<std::size_t>(1, 4), *uniformIn<std::size_t>(1, 4));
        stride = Size2(*uniformIn<std::size_t>(1, 4), *uniformIn<std::size_t>(1, 4));
        h = *uniformIn<std::size_t>(kernel.h, 9);
        w = *uniformIn<std::size_t>(kernel.w, 9);
    }
    const Shape shape{*uniformIn<std::size_t>(1, 3), *uniformIn<std::size_t>(1, 3), h, w};
    Array x = Array::from_shape(shape);
    for (double& v : x) {
        const int pick = *uniformIn<int>(0, 9);
        v = pick == 8 ? std::nan("") : static_cast<double>(pick % 3);
    }
    xgrad::MaxPool2d<T> pool(kernel, stride);
    const Var<T> xv(Values(xt::cast<T>(x)), true);
    const Var<T> y = pool(xv);
    Array gy = Array::from_shape(y.shape());
    std::iota(gy.begin(), gy.end(), 1.0);
    // Twice: one pooling's input gradient is written, the other's added to it.
    const bool twice = *rc::gen::arbitrary<bool>();
    (twice ? Var<T>(y + pool(xv)) : y).backward(Values(xt::cast<T>(gy)));
    auto [y_ref, dx_ref] = referenceMaxPool(x, kernel, stride, gy);
    if (twice) dx_ref *= 2.0;
    RC_ASSERT(y.shape() == y_ref.shape());
    for (std::size_t i = 0; i < y_ref.size(); ++i) {
        const double a = y.value().data()[i], b = y_ref.data()[i];
        RC_ASSERT((a == b || (std::isnan(a) && std::isnan(b))));
    }
    RC_ASSERT(Array(xt::cast<double>(xv.grad())) == dx_ref);
}

RC_GTEST_PROP(MaxPool2d, TiesAndNaNsFollowTorchsRule, ()) { checkTiesAndNaNs<double>(); }
RC_GTEST_PROP(MaxPool2d, TiesAndNaNsFollowTorchsRuleInFloat, ()) { checkTiesAndNaNs<float>(); }

TEST(MaxPool2d, OverlappingWindowsAddTheirGradients) {
    xgrad::MaxPool2d<double> pool(Size2(1, 3), Size2(1, 1));
    const Var<double> xv = leaf(Array{{{{0.0, 1.0, 9.0, 2.0, 3.0}}}});
    const Var<double> y = pool(xv);
    EXPECT_EQ(y.value(), (Array{{{{9.0, 9.0, 9.0}}}}));
    y.backward(Array{{{{1.0, 2.0, 4.0}}}});
    EXPECT_EQ(xv.grad(), (Array{{{{0.0, 0.0, 7.0, 0.0, 0.0}}}}));
}

TEST(CrossEntropy, MatchesTheDefinitionAndStaysFiniteForLargeLogits) {
    const Array logits = {{1.0, 2.0, 3.0}, {1000.0, -1000.0, 0.0}};
    const Labels labels = {2, 1};
    const double row0 = std::log(std::exp(1.0) + std::exp(2.0) + std::exp(3.0)) - 3.0;
    const double row1 = 2000.0;  // log(e^1000 + ...) - (-1000), the other terms vanish
    const Var<double> loss = xgrad::cross_entropy(leaf(logits), labels);
    EXPECT_EQ(loss.shape(), Shape{});
    EXPECT_NEAR(loss.value()(), (row0 + row1) / 2, 1e-12);
}

// ---------------------------------------------------------------------------------------------
// Errors a user sees

// The seed document's CNN without its BatchNorm layers: after two 2x2 poolings of 28x28 inputs,
// fc1 receives 64 * 7 * 7 = 3136 features, not the 64 * 28 * 28 = 50176 it was declared with.
TEST(ShapeErrors, SeedCnnFc1NamesTheLayerAndBothSizes) {
    xgrad::manual_seed(0);
    xgrad::Sequential<float> net;
    net.add("conv1", std::make_shared<xgrad::Conv2d<float>>(1, 32, 3, 1, 1));
    net.add("relu1", std::make_shared<xgrad::ReLU<float>>());
    net.add("pool1", std::make_shared<xgrad::MaxPool2d<float>>(2, 2));
    net.add("conv2", std::make_shared<xgrad::Conv2d<float>>(32, 64, 3, 1, 1));
    net.add("relu2", std::make_shared<xgrad::ReLU<float>>());
    net.add("pool2", std::make_shared<xgrad::MaxPool2d<float>>(2, 2));
    net.add("flatten", std::make_shared<xgrad::Flatten<float>>());
    net.add("fc1", std::make_shared<xgrad::Linear<float>>(64 * 28 * 28, 128));
    net.add("fc2", std::make_shared<xgrad::Linear<float>>(128, 10));
    const Var<float> x(xt::xarray<float>(xt::zeros<float>({64, 1, 28, 28})));
    try {
        net(x);
        FAIL() << "no exception";
    } catch (const xgrad::ShapeError& e) {
        EXPECT_STREQ(e.what(), "fc1 (Linear(in_features=50176, out_features=128)): expected input (N, 50176), got (64, 3136)");
    }
}

TEST(ShapeErrors, NameTheLayerTheExpectedAndTheGivenShape) {
    xgrad::Sequential<double> net;
    auto inner = net.add("features", std::make_shared<xgrad::Sequential<double>>());
    inner->add(std::make_shared<xgrad::Conv2d<double>>(3, 8, 3));
    auto pool = net.add("pool", std::make_shared<xgrad::MaxPool2d<double>>(2));
    auto fc = net.add("fc", std::make_shared<xgrad::Linear<double>>(4, 2, false));
    auto flatten = net.add("flatten", std::make_shared<xgrad::Flatten<double>>());
    const auto zeros = [](const Shape& s) { return Var<double>(Array(xt::zeros<double>(s))); };

    expectError<xgrad::ShapeError>([&] { net(zeros({2, 1, 8, 8})); },
                                   {"features.0 (Conv2d(3, 8, kernel_size=(3, 3), stride=(1, 1)))", "(N, 3, H, W)", "(2, 1, 8, 8)"});
    expectError<xgrad::ShapeError>([&] { (*inner)(zeros({3, 8, 8})); }, {"features.0", "(3, 8, 8)"});
    expectError<xgrad::ShapeError>([&] { (*inner)(zeros({1, 3, 2, 8})); }, {"features.0", "(1, 3, 2, 8)", "(3, 3)"});
    expectError<xgrad::ShapeError>([&] { (*pool)(zeros({1, 2, 1, 5})); }, {"pool (MaxPool2d(kernel_size=(2, 2), stride=(2, 2)))", "(1, 2, 1, 5)"});
    expectError<xgrad::ShapeError>([&] { (*fc)(zeros({4})); },
                                   {"fc (Linear(in_features=4, out_features=2, bias=False))", "(N, 4)", "got (4)"});
    expectError<xgrad::ShapeError>([&] { (*flatten)(zeros({5})); }, {"flatten (Flatten(", "(5)"});
}

TEST(CrossEntropy, LabelOutOfRangeNamesTheLabelItsIndexAndK) {
    const Var<double> logits(Array(xt::zeros<double>({3, 10})), true);
    expectError<std::out_of_range>([&] { xgrad::cross_entropy(logits, Labels{1, 2, 10}); },
                                   {"label 10", "index 2", "10 classes"});
    expectError<std::out_of_range>([&] { xgrad::cross_entropy(logits, Labels{-1, 2, 3}); }, {"label -1", "index 0"});
    expectError<xgrad::ShapeError>([&] { xgrad::cross_entropy(logits, Labels{1, 2}); }, {"(3, 10)", "(2)"});
}

TEST(LayerArguments, InvalidOnesAreRejected) {
    EXPECT_THROW(xgrad::Linear<float>(0, 3), std::invalid_argument);
    EXPECT_THROW(xgrad::Conv2d<float>(1, 1, 3, 0), std::invalid_argument);
    EXPECT_THROW(xgrad::MaxPool2d<float>(0), std::invalid_argument);
    EXPECT_THROW(xgrad::Dropout<float>(1.5), std::invalid_argument);
    EXPECT_THROW(xgrad::Dropout<float>(-0.1), std::invalid_argument);
    xgrad::Sequential<float> net;
    EXPECT_THROW(net.add(std::shared_ptr<xgrad::ReLU<float>>()), std::invalid_argument);
}

// ---------------------------------------------------------------------------------------------
// Modules

TEST(Sequential, NamesParametersByPositionOrGivenName) {
    xgrad::Sequential<float> net{std::make_shared<xgrad::Linear<float>>(3, 4), std::make_shared<xgrad::ReLU<float>>()};
    net.add("head", std::make_shared<xgrad::Linear<float>>(4, 2, false));
    std::vector<std::string> names;
    for (const auto& [name, p] : net.named_parameters()) names.push_back(name);
    EXPECT_EQ(names, (std::vector<std::string>{"0.weight", "0.bias", "head.weight"}));
    EXPECT_EQ(net.size(), 3u);
    EXPECT_EQ(net[2].path(), "head");
    EXPECT_EQ(net(Var<float>(xt::xarray<float>(xt::ones<float>({5, 3})))).shape(), Shape({5, 2}));
}

TEST(Residual, AddsTheInputAndNestsTheBodysNames) {
    auto body = std::make_shared<xgrad::Sequential<double>>();
    auto fc = body->add(std::make_shared<xgrad::Linear<double>>(2, 2));
    fc->weight().mutable_value() = Array{{1.0, 2.0}, {3.0, 4.0}};
    fc->bias()->mutable_value() = Array{0.5, -0.5};
    xgrad::Sequential<double> net;
    net.add("block1", std::make_shared<xgrad::Residual<double>>(body));
    const Var<double> y = net(leaf(Array{{1.0, -1.0}}));
    EXPECT_EQ(closeMismatch(y.value(), Array{{1.0 + (1.0 - 2.0 + 0.5), -1.0 + (3.0 - 4.0 - 0.5)}}, 0.0,
                            "Residual output"),
              "");
    std::vector<std::string> names;
    for (const auto& [name, p] : net.named_parameters()) names.push_back(name);
    EXPECT_EQ(names, (std::vector<std::string>{"block1.body.0.weight", "block1.body.0.bias"}));
}

TEST(Residual, ABodyChangingTheShapeNamesTheBlockAndBothShapes) {
    auto body = std::make_shared<xgrad::Sequential<double>>();
    body->add(std::make_shared<xgrad::Linear<double>>(3, 4));
    xgrad::Sequential<double> net;
    net.add("block1", std::make_shared<xgrad::Residual<double>>(body));
    expectError<xgrad::ShapeError>([&] { net(leaf(Array(xt::zeros<double>({2, 3})))); }, {"block1 (Residual)", "(2, 4)", "(2, 3)"});
    expectError<std::invalid_argument>([] { xgrad::Residual<double>(nullptr); }, {"null body"});
}

TEST(Dropout, EvalIsTheIdentityAndTrainingMasksAndScales) {
    xgrad::Sequential<double> net;
    net.add(std::make_shared<xgrad::Dropout<double>>(0.25, 1));
    const Var<double> x(Array(xt::ones<double>({100, 100})));
    net.eval();
    EXPECT_EQ(net(x).node(), x.node());
    net.train();
    const Var<double> y = net(x);
    std::size_t kept = 0;
    for (double v : y.value()) {
        ASSERT_TRUE(v == 0.0 || std::abs(v - 1.0 / 0.75) < 1e-15) << v;
        kept += v != 0.0;
    }
    // 10^4 Bernoulli(0.75) draws: the count is within 5 standard deviations (43) of 7500.
    EXPECT_NEAR(static_cast<double>(kept), 7500.0, 5 * 43.3);
    EXPECT_EQ(xgrad::Dropout<double>(0.25, 1)(x).value(), y.value()) << "the seed fixes the mask";
    EXPECT_NE(net(x).value(), y.value()) << "each call draws a new mask";
    EXPECT_EQ(xgrad::Dropout<double>(1.0, 1)(x).value(), Array(xt::zeros<double>({100, 100})));
}

// Santurkar et al.'s noise: on a zero input the output is the shift m_ij, within 0.6 of 0 and
// within 0.1 of its unit's mean mu_j (the spread over samples of one unit); on a ones input minus
// the zero input, the scale s_ij, around its unit's sigma_j in [1, 1.25] with sd 0.1. One draw
// per (sample, channel), shared over positions; eval mode is the identity; a bad rank is named.
TEST(DistributionNoise, DrawsPerUnitShiftsAndScalesAsSpecified) {
    constexpr std::size_t n = 4000, c = 3, hw = 2;
    const Shape shape{n, c, hw};
    const Var<double> zeros(Array(xt::zeros<double>(shape))), ones(Array(xt::ones<double>(shape)));
    const Array shift = xgrad::DistributionNoise<double>(7)(zeros).value();
    const Array scale = xgrad::DistributionNoise<double>(7)(ones).value() - shift;
    std::vector<double> unit_scales;
    for (std::size_t j = 0; j < c; ++j) {
        double lo = 1e9, hi = -1e9, scale_sum = 0, scale_sq = 0;
        for (std::size_t i = 0; i < n; ++i) {
            ASSERT_EQ(shift(i, j, 0), shift(i, j, 1)) << "one shift per sample and channel";
            ASSERT_EQ(scale(i, j, 0), scale(i, j, 1));
            lo = std::min(lo, shift(i, j, 0));
            hi = std::max(hi, shift(i, j, 0));
            scale_sum += scale(i, j, 0);
            scale_sq += scale(i, j, 0) * scale(i, j, 0);
        }
        EXPECT_GE(lo, -0.6);
        EXPECT_LE(hi, 0.6);
        EXPECT_LE(hi - lo, 0.2) << "channel " << j << ": m_ij within mu_j +- 0.1";
        EXPECT_GT(hi - lo, 0.19) << "channel " << j << ": 4000 uniform draws span nearly 0.2";
        const double mean = scale_sum / n, sd = std::sqrt(scale_sq / n - mean * mean);
        // sigma_j is in [1, 1.25]; the mean of 4000 draws of N(sigma_j, 0.1) is within 0.01 of it.
        EXPECT_GT(mean, 1.0 - 0.01);
        EXPECT_LT(mean, 1.25 + 0.01);
        EXPECT_NEAR(sd, 0.1, 0.01) << "channel " << j;
        unit_scales.push_back(mean);
    }
    const auto [lowest, highest] = std::minmax_element(unit_scales.begin(), unit_scales.end());
    EXPECT_GT(*highest - *lowest, 0.02) << "each channel draws its own sigma_j";
    xgrad::Sequential<double> net;
    net.add(std::make_shared<xgrad::DistributionNoise<double>>(1));
    net.eval();
    EXPECT_EQ(net(ones).node(), ones.node());
    net.train();
    EXPECT_NE(net(ones).value(), net(ones).value()) << "each call draws anew";
    try {
        net(Var<double>(Array{1.0, 2.0}));
        ADD_FAILURE() << "a 1-D input was accepted";
    } catch (const std::invalid_argument& e) {
        EXPECT_NE(std::string(e.what()).find("DistributionNoise"), std::string::npos) << e.what();
        EXPECT_NE(std::string(e.what()).find("(2)"), std::string::npos) << e.what();
    }
}

TEST(Dropout, BackwardReusesTheForwardMask) {
    xgrad::Dropout<double> dropout(0.5, 3);
    const Var<double> x = leaf(Array(xt::ones<double>({8, 8})));
    const Var<double> y = dropout(x);
    y.backward(Array(xt::ones<double>({8, 8})));
    EXPECT_EQ(x.grad(), y.value());
}

// ---------------------------------------------------------------------------------------------
// Initialization

TEST(Init, DefaultLinearAndConvInitsUseTheBoundOneOverSqrtFanIn) {
    xgrad::Rng rng(11);
    xgrad::Linear<double> fc(400, 300, true, rng);
    xgrad::Conv2d<double> conv(16, 32, 5, 1, 0, true, rng);
    for (auto [w, b, fan_in] : {std::tuple{fc.weight(), *fc.bias(), 400.0}, std::tuple{conv.weight(), *conv.bias(), 400.0}}) {
        const double bound = 1.0 / std::sqrt(fan_in);
        EXPECT_LE(xt::amax(xt::abs(w.value()))(), bound);
        EXPECT_LE(xt::amax(xt::abs(b.value()))(), bound);
        // U(-a, a) has variance a²/3; 3% is over 3 standard errors with 12800 draws.
        EXPECT_NEAR(xt::variance(w.value())() / (bound * bound / 3), 1.0, 0.03);
    }
}

TEST(Init, GaussianXavierAndKaimingHaveTorchsScales) {
    xgrad::Rng rng(5);
    Array w = Array::from_shape({256, 128, 3, 3});  // fan_in 1152, fan_out 2304
    const double fan_in = 1152, fan_out = 2304;
    auto std_of = [&] { return std::sqrt(xt::variance(w)()); };
    xgrad::normal_(w, 0.0, 0.05, rng);
    EXPECT_NEAR(std_of() / 0.05, 1.0, 0.01);
    xgrad::xavier_normal_(w, 1.0, rng);
    EXPECT_NEAR(std_of() / std::sqrt(2.0 / (fan_in + fan_out)), 1.0, 0.01);
    xgrad::xavier_uniform_(w, 2.0, rng);
    EXPECT_LE(xt::amax(xt::abs(w))(), 2.0 * std::sqrt(6.0 / (fan_in + fan_out)));
    EXPECT_NEAR(std_of() / (2.0 * std::sqrt(2.0 / (fan_in + fan_out))), 1.0, 0.01);
    xgrad::kaiming_normal_(w, 0.0, xgrad::FanMode::fan_out, xgrad::Nonlinearity::relu, rng);
    EXPECT_NEAR(std_of() / std::sqrt(2.0 / fan_out), 1.0, 0.01);
    xgrad::kaiming_uniform_(w, 0.0, xgrad::FanMode::fan_in, xgrad::Nonlinearity::relu, rng);
    EXPECT_LE(xt::amax(xt::abs(w))(), std::sqrt(6.0 / fan_in));
    EXPECT_NEAR(std_of() / std::sqrt(2.0 / fan_in), 1.0, 0.01);
    EXPECT_NEAR(std::abs(xt::mean(w)()), 0.0, 1e-3);
}

TEST(Init, GainsFansAndSeeds) {
    EXPECT_DOUBLE_EQ(xgrad::calculate_gain(xgrad::Nonlinearity::tanh), 5.0 / 3.0);
    EXPECT_DOUBLE_EQ(xgrad::calculate_gain(xgrad::Nonlinearity::relu), std::sqrt(2.0));
    EXPECT_DOUBLE_EQ(xgrad::calculate_gain(xgrad::Nonlinearity::leaky_relu, std::sqrt(5.0)), std::sqrt(1.0 / 3.0));
    EXPECT_DOUBLE_EQ(xgrad::calculate_gain(xgrad::Nonlinearity::selu), 0.75);
    const xgrad::Fans f = xgrad::fans({8, 3, 5, 5});
    EXPECT_EQ(f.fan_in, 75u);
    EXPECT_EQ(f.fan_out, 200u);
    EXPECT_THROW(xgrad::fans({4}), std::invalid_argument);
    xgrad::manual_seed(42);
    xgrad::Linear<float> a(10, 10);
    xgrad::manual_seed(42);
    xgrad::Linear<float> b(10, 10);
    EXPECT_EQ(a.weight().value(), b.weight().value());
    EXPECT_EQ(a.bias()->value(), b.bias()->value());
}

// ---------------------------------------------------------------------------------------------
// Optimizers against hand-computed steps

// One parameter [1.0], driven by the gradients `grads` through loss = sum(g * p), one step each.
template <class Opt, class Options>
std::vector<double> runSteps(const Options& options, const std::vector<double>& grads, Var<double>& p) {
    Opt opt({p}, options);
    std::vector<double> trajectory;
    for (double g : grads) {
        opt.zero_grad();
        xgrad::sum(p * g).backward();
        opt.step();
        trajectory.push_back(p.value()(0));
    }
    return trajectory;
}

void expectTrajectory(const std::vector<double>& actual, const std::vector<double>& expected) {
    ASSERT_EQ(actual.size(), expected.size());
    for (std::size_t i = 0; i < actual.size(); ++i) EXPECT_NEAR(actual[i], expected[i], 1e-12) << "after step " << i + 1;
}

TEST(SGD, PlainMomentumDampeningNesterovAndWeightDecay) {
    auto run = [](const xgrad::SgdOptions& options) {
        Var<double> p(Array{1.0}, true);
        return runSteps<xgrad::SGD<double>>(options, {1.0, 1.0, 1.0}, p);
    };
    // p -= 0.1 * 1 each step.
    expectTrajectory(run({.lr = 0.1}), {0.9, 0.8, 0.7});
    // buf = 1 (first step: the gradient itself), 1.9, 2.71; p = 0.9, 0.71, 0.439.
    expectTrajectory(run({.lr = 0.1, .momentum = 0.9}), {0.9, 0.71, 0.439});
    // buf = 1 (no dampening on the first step), 0.9 + 0.5 = 1.4, 1.26 + 0.5 = 1.76.
    expectTrajectory(run({.lr = 0.1, .momentum = 0.9, .dampening = 0.5}), {0.9, 0.76, 0.584});
    // d = g + 0.9 buf with buf = 1, 1.9, 2.71: d = 1.9, 2.71, 3.439.
    expectTrajectory(run({.lr = 0.1, .momentum = 0.9, .nesterov = true}), {0.81, 0.539, 0.1951});
    // d = g + 0.1 p: 1.1, 1.089, 1.07811.
    expectTrajectory(run({.lr = 0.1, .weight_decay = 0.1}), {0.89, 0.7811, 0.673289});
    // d = 1.1, 1.089, 1.06821; buf = 1.1, 0.99 + 1.089 = 2.079, 1.8711 + 1.06821 = 2.93931.
    expectTrajectory(run({.lr = 0.1, .momentum = 0.9, .weight_decay = 0.1}), {0.89, 0.6821, 0.388169});
}

TEST(SGD, ExposesMomentumBuffersAndSkipsParametersWithoutGradient) {
    Var<double> p(Array{1.0, 2.0}, true);
    Var<double> unused(Array{5.0}, true);
    xgrad::SGD<double> opt({p, unused}, {.lr = 0.5, .momentum = 0.9});
    xgrad::sum(p * 2.0).backward();
    opt.step();
    xgrad::sum(p * 2.0).backward();  // accumulates: grad 4
    opt.step();
    ASSERT_TRUE(opt.momentum_buffers()[0].has_value());
    EXPECT_TRUE(xt::allclose(*opt.momentum_buffers()[0], Array{5.8, 5.8}, 1e-15));  // 0.9 * 2 + 4
    EXPECT_FALSE(opt.momentum_buffers()[1].has_value());
    EXPECT_EQ(unused.value(), Array{5.0});
    EXPECT_EQ(opt.options().momentum, 0.9);
}

TEST(SGD, RejectsWhatTorchRejects) {
    Var<double> p(Array{1.0}, true);
    EXPECT_THROW(xgrad::SGD<double>({p}, {}), std::invalid_argument) << "lr is required";
    EXPECT_THROW(xgrad::SGD<double>({p}, {.lr = -1.0}), std::invalid_argument);
    EXPECT_THROW(xgrad::SGD<double>({p}, {.lr = 0.1, .nesterov = true}), std::invalid_argument);
    EXPECT_THROW(xgrad::SGD<double>({p}, {.lr = 0.1, .momentum = 0.9, .dampening = 0.1, .nesterov = true}),
                 std::invalid_argument);
}

TEST(Adam, BiasCorrectedStepsWithAndWithoutWeightDecay) {
    // Gradients 1, -2, 0.5 with lr 0.1 and torch's defaults. Step 1: m = 0.1, v = 0.001, and the
    // corrected ratio m̂ / (sqrt(v̂) + eps) = 1 / (1 + 1e-8). Step 2: m = -0.11, v = 0.004999,
    // m̂ = -0.11 / 0.19, v̂ = 0.004999 / 0.001999. Step 3 likewise (values from torch 1.13 in double).
    Var<double> p(Array{1.0}, true);
    xgrad::Adam<double> opt({p}, {.lr = 0.1});
    const std::vector<double> grads{1.0, -2.0, 0.5};
    const std::vector<double> expected_p{1.0 - 0.1 / (1.0 + 1e-8), 0.9366103534720749, 0.9502794196738216};
    const std::vector<double> expected_m{0.1, -0.11, -0.049};
    const std::vector<double> expected_v{0.001, 0.004999, 0.005244001};
    for (std::size_t t = 0; t < 3; ++t) {
        opt.zero_grad();
        xgrad::sum(p * grads[t]).backward();
        opt.step();
        EXPECT_NEAR(p.value()(0), expected_p[t], 1e-12) << "step " << t + 1;
        EXPECT_NEAR(opt.state()[0].exp_avg(0), expected_m[t], 1e-15);
        EXPECT_NEAR(opt.state()[0].exp_avg_sq(0), expected_v[t], 1e-15);
        EXPECT_EQ(opt.state()[0].step, static_cast<std::int64_t>(t + 1));
    }
    // With weight_decay 0.5 the gradient seen is g + 0.5 p: 1.5 on the first step.
    Var<double> q(Array{1.0}, true);
    expectTrajectory(runSteps<xgrad::Adam<double>>(xgrad::AdamOptions{.lr = 0.1, .weight_decay = 0.5}, grads, q),
                     {0.9000000006666666, 0.9069015188655994, 0.8859373445042629});
}

TEST(Adam, RejectsWhatTorchRejects) {
    Var<double> p(Array{1.0}, true);
    EXPECT_THROW(xgrad::Adam<double>({p}, {.betas = {1.0, 0.999}}), std::invalid_argument);
    EXPECT_THROW(xgrad::Adam<double>({p}, {.eps = -1.0}), std::invalid_argument);
    EXPECT_THROW(xgrad::Adam<double>({p}, {.weight_decay = -1.0}), std::invalid_argument);
    const xgrad::AdamOptions defaults = xgrad::Adam<double>({p}).options();
    EXPECT_EQ(defaults.lr, 1e-3);
    EXPECT_EQ(defaults.betas, std::make_pair(0.9, 0.999));
    EXPECT_EQ(defaults.eps, 1e-8);
    EXPECT_EQ(defaults.weight_decay, 0.0);
}

}  // namespace
