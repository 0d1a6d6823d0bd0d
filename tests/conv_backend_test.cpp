// Conv2d<float> on oneDNN's convolution (layers/conv_backend.hpp) against Conv2d<double> on its
// own, whose gradients the layers suite checks against central differences and direct loops: the
// output and every gradient, at small drawn shapes (every stride, padding, rectangular kernels, no
// bias) and, in fewer cases, at the seed CNN's sizes, where oneDNN picks its blocked layouts and
// threads; gradients that add to held ones; frozen inputs; the empty batch; the backend's choice
// and its errors. The oneDNN cases skip in a build without it.
#include <gtest/gtest.h>
#include <rapidcheck/gtest.h>

#include <algorithm>
#include <cstddef>
#include <memory>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include <tbb/global_control.h>
#include <xtensor/xmath.hpp>
#include <xtensor/xrandom.hpp>

#include "layers/conv2d.hpp"
#include "layers/conv_backend.hpp"
#include "tests/generators.hpp"

namespace {

using namespace xgrad_test;
using xgrad::ConvBackend;
using xgrad::Size2;
using Floats = xt::xarray<float>;

struct ConvCase {
    std::size_t n, c, out_c, h, w;
    Size2 kernel{1}, stride{1}, padding{0};
    bool bias = true;
};

std::string describe(const ConvCase& k) {
    std::ostringstream os;
    os << "N=" << k.n << " C=" << k.c << " out_C=" << k.out_c << " H=" << k.h << " W=" << k.w
       << " kernel=" << k.kernel.str() << " stride=" << k.stride.str() << " padding=" << k.padding.str()
       << " bias=" << k.bias;
    return os.str();
}

std::size_t outSize(std::size_t in, std::size_t kernel, std::size_t stride, std::size_t padding) {
    return (in + 2 * padding - kernel) / stride + 1;
}

// Small shapes with every kind of window: kernels up to 4 (rectangular), strides up to 3,
// paddings up to half the kernel (torch's limit), inputs down to a single window.
rc::Gen<ConvCase> genSmallCase() {
    return rc::gen::exec([] {
        ConvCase k{*uniformIn<std::size_t>(1, 5), *uniformIn<std::size_t>(1, 6), *uniformIn<std::size_t>(1, 7), 0, 0};
        k.kernel = Size2(*uniformIn<std::size_t>(1, 5), *uniformIn<std::size_t>(1, 5));
        k.stride = Size2(*uniformIn<std::size_t>(1, 4), *uniformIn<std::size_t>(1, 4));
        k.padding = Size2(*uniformIn<std::size_t>(0, k.kernel.h / 2 + 1), *uniformIn<std::size_t>(0, k.kernel.w / 2 + 1));
        k.h = *uniformIn<std::size_t>(std::max<std::size_t>(1, k.kernel.h - 2 * k.padding.h), 10);
        k.w = *uniformIn<std::size_t>(std::max<std::size_t>(1, k.kernel.w - 2 * k.padding.w), 10);
        k.bias = *rc::gen::arbitrary<bool>();
        return k;
    });
}

// The seed CNN's convolutions and shapes near them: 3x3, padding 1, a batch of up to 64.
rc::Gen<ConvCase> genLargeCase() {
    return rc::gen::exec([] {
        const auto side = *rc::gen::element<std::size_t>(7, 14, 28);
        ConvCase k{*uniformIn<std::size_t>(8, 65), *rc::gen::element<std::size_t>(1, 3, 16, 32),
                   *rc::gen::element<std::size_t>(8, 32, 64), side, side, Size2(3), Size2(1), Size2(1)};
        k.bias = *rc::gen::arbitrary<bool>();
        return k;
    });
}

// The worst |actual - expected| over max|expected|: float's rounding of sums of up to a few
// thousand terms of either sign stays far below the bound; a wrong tap, layout or sign does not.
void checkNormwise(const Floats& actual, const Array& expected, const std::string& what) {
    RC_ASSERT(xgrad::to_shape(actual.shape()) == xgrad::to_shape(expected.shape()));
    if (expected.size() == 0) return;
    const double scale = std::max(xt::amax(xt::abs(expected))(), 1e-30);
    const double error = xt::amax(xt::abs(xt::cast<double>(actual) - expected))() / scale;
    if (!(error <= 1e-4)) RC_FAIL(what + ": normwise error " + std::to_string(error));
}

// Forward and backward of `k` with oneDNN in float and with the own code in double, from the same
// values (floats, so both start equal), compared tensor by tensor.
void checkAgainstOwnDouble(const ConvCase& k) {
    RC_TAG(describe(k));
    const std::size_t oh = outSize(k.h, k.kernel.h, k.stride.h, k.padding.h);
    const std::size_t ow = outSize(k.w, k.kernel.w, k.stride.w, k.padding.w);
    const Floats x = xt::cast<float>(*genBulkArray({k.n, k.c, k.h, k.w}, anywhere(-2, 2)));
    const Floats w = xt::cast<float>(*genBulkArray({k.out_c, k.c, k.kernel.h, k.kernel.w}, anywhere(-1, 1)));
    const Floats b = xt::cast<float>(*genBulkArray({k.out_c}, anywhere(-1, 1)));
    const Floats gy = xt::cast<float>(*genBulkArray({k.n, k.out_c, oh, ow}, anywhere(-1, 1)));

    xgrad::Conv2d<double> own(k.c, k.out_c, k.kernel, k.stride, k.padding, k.bias);
    own.weight().mutable_value() = xt::cast<double>(w);
    if (k.bias) own.bias()->mutable_value() = xt::cast<double>(b);
    const Var<double> x_own(xt::cast<double>(x), true);
    const Var<double> y_own = own(x_own);
    y_own.backward(xt::cast<double>(gy));

    const xgrad::ConvBackendScope onednn(ConvBackend::onednn);
    xgrad::Conv2d<float> conv(k.c, k.out_c, k.kernel, k.stride, k.padding, k.bias);
    conv.weight().mutable_value() = w;
    if (k.bias) conv.bias()->mutable_value() = b;
    const Var<float> xv(x, true);
    const Var<float> y = conv(xv);
    y.backward(gy);

    checkNormwise(y.value(), y_own.value(), "y");
    checkNormwise(xv.grad(), x_own.grad(), "dx");
    checkNormwise(conv.weight().grad(), own.weight().grad(), "dW");
    if (k.bias) checkNormwise(conv.bias()->grad(), own.bias()->grad(), "db");
}

bool skipWithoutOneDnn() { return !xgrad::onednn_convolution_available(); }

// One case in ten at the seed CNN's sizes, where oneDNN picks blocked layouts; at 1 or 2 threads,
// which split the batch (oneDNN's primitives are kept per thread count).
RC_GTEST_PROP(OneDnnConv2d, MatchesTheOwnConvolutionInDouble, ()) {
    if (skipWithoutOneDnn()) RC_DISCARD("this build has no oneDNN");
    const auto threads = *uniformIn<std::size_t>(1, 3);  // 1 or 2
    const tbb::global_control limit(tbb::global_control::max_allowed_parallelism, threads);
    RC_TAG("threads=" + std::to_string(threads));
    checkAgainstOwnDouble(*rc::gen::weightedOneOf<ConvCase>({{9, genSmallCase()}, {1, genLargeCase()}}));
}

TEST(OneDnnConv2d, GradientsAddToTheOnesHeld) {
    if (skipWithoutOneDnn()) GTEST_SKIP() << "this build has no oneDNN";
    const xgrad::ConvBackendScope onednn(ConvBackend::onednn);
    xgrad::Conv2d<float> conv(3, 4, 3, 1, 1);
    const Var<float> x(xt::random::randn<float>({2, 3, 6, 6}), true);
    const Var<float> y = conv(x);
    const Floats gy = xt::random::randn<float>(y.shape());
    y.backward(gy, true);
    const Floats dx = x.grad(), dw = conv.weight().grad(), db = conv.bias()->grad();
    y.backward(gy);
    EXPECT_EQ(x.grad(), Floats(2.0f * dx));
    EXPECT_EQ(conv.weight().grad(), Floats(2.0f * dw));
    EXPECT_EQ(conv.bias()->grad(), Floats(2.0f * db));
}

// Each of x, weight and bias frozen in turn (the seed CNN's first layer: its input needs no
// gradient): the others' gradients as the own code gives them, the frozen one none.
TEST(OneDnnConv2d, OnlyTheGradientsAskedForAreWritten) {
    if (skipWithoutOneDnn()) GTEST_SKIP() << "this build has no oneDNN";
    const Floats x = xt::random::randn<float>({3, 2, 5, 5});
    xgrad::Conv2d<float> reference(2, 4, 3, 1, 1);
    const Var<float> x_reference(x, true);
    const Var<float> y_reference = reference(x_reference);
    const Floats gy = xt::random::randn<float>(y_reference.shape());
    y_reference.backward(gy);
    const auto close = [](const Floats& a, const Floats& b) { return xt::amax(xt::abs(a - b))() < 1e-4; };

    const xgrad::ConvBackendScope onednn(ConvBackend::onednn);
    xgrad::Conv2d<float> conv(2, 4, 3, 1, 1);
    conv.weight().mutable_value() = reference.weight().value();
    conv.bias()->mutable_value() = reference.bias()->value();
    for (const std::string frozen : {"x", "weight", "bias"}) {
        SCOPED_TRACE(frozen);
        conv.zero_grad();
        conv.weight().set_requires_grad(frozen != "weight");
        conv.bias()->set_requires_grad(frozen != "bias");
        const Var<float> input(x, frozen != "x");
        conv(input).backward(gy);
        EXPECT_EQ(input.has_grad(), frozen != "x");
        EXPECT_EQ(conv.weight().has_grad(), frozen != "weight");
        EXPECT_EQ(conv.bias()->has_grad(), frozen != "bias");
        if (frozen != "x") {
            EXPECT_TRUE(close(input.grad(), x_reference.grad()));
        }
        if (frozen != "weight") {
            EXPECT_TRUE(close(conv.weight().grad(), reference.weight().grad()));
        }
        if (frozen != "bias") {
            EXPECT_TRUE(close(conv.bias()->grad(), reference.bias()->grad()));
        }
    }
}

// The choice is per thread: runs training side by side (xgrad experiment --jobs 2) keep their own.
TEST(ConvBackend, AChoiceIsTheCallingThreadsOnly) {
    if (skipWithoutOneDnn()) GTEST_SKIP() << "this build has no oneDNN";
    const xgrad::ConvBackendScope onednn(ConvBackend::onednn);
    ConvBackend seen_elsewhere = ConvBackend::onednn;
    std::thread([&] { seen_elsewhere = xgrad::conv_backend(); }).join();
    EXPECT_EQ(seen_elsewhere, ConvBackend::own);
    EXPECT_EQ(xgrad::conv_backend(), ConvBackend::onednn);
}

// Two threads, each its own shape and primitives, convolving at once over and over: each result
// bitwise the one it has alone (every primitive takes its scratch memory from its own shape's).
TEST(OneDnnConv2d, ThreadsConvolvingAtOnceGetTheResultsTheyGetAlone) {
    if (skipWithoutOneDnn()) GTEST_SKIP() << "this build has no oneDNN";
    const tbb::global_control one_thread(tbb::global_control::max_allowed_parallelism, 1);
    struct Job {
        std::unique_ptr<xgrad::Conv2d<float>> conv;
        Floats x, gy;
        Floats y{}, dx{}, dw{};
    };
    std::vector<Job> jobs;
    jobs.push_back({std::make_unique<xgrad::Conv2d<float>>(8, 16, 3, 1, 1), xt::random::randn<float>({8, 8, 14, 14}),
                    xt::random::randn<float>({8, 16, 14, 14})});
    jobs.push_back({std::make_unique<xgrad::Conv2d<float>>(4, 8, 3, 2, 1), xt::random::randn<float>({6, 4, 20, 20}),
                    xt::random::randn<float>({6, 8, 10, 10})});
    const auto step = [](Job& job) {
        const xgrad::ConvBackendScope onednn(ConvBackend::onednn);
        job.conv->zero_grad();
        const Var<float> x(job.x, true);
        const Var<float> y = (*job.conv)(x);
        y.backward(job.gy);
        return std::tuple<Floats, Floats, Floats>{y.value(), x.grad(), job.conv->weight().grad()};
    };
    for (Job& job : jobs) std::tie(job.y, job.dx, job.dw) = step(job);
    std::vector<int> mismatches(jobs.size(), 0);
    std::vector<std::thread> threads;
    for (std::size_t j = 0; j < jobs.size(); ++j) {
        threads.emplace_back([&, j] {
            for (int round = 0; round < 50; ++round) {
                const auto [y, dx, dw] = step(jobs[j]);
                mismatches[j] += y != jobs[j].y || dx != jobs[j].dx || dw != jobs[j].dw;
            }
        });
    }
    for (auto& thread : threads) thread.join();
    EXPECT_EQ(mismatches, std::vector<int>(jobs.size(), 0));
}

TEST(OneDnnConv2d, AnEmptyBatchGivesAnEmptyOutputAndZeroGradients) {
    if (skipWithoutOneDnn()) GTEST_SKIP() << "this build has no oneDNN";
    const xgrad::ConvBackendScope onednn(ConvBackend::onednn);
    xgrad::Conv2d<float> conv(2, 4, 3, 1, 1);
    const Var<float> x(Floats::from_shape({0, 2, 5, 5}), true);
    const Var<float> y = conv(x);
    EXPECT_EQ(y.shape(), xgrad::Shape({0, 4, 5, 5}));
    y.backward(Floats::from_shape({0, 4, 5, 5}));
    EXPECT_EQ(conv.weight().grad(), Floats(xt::zeros<float>(conv.weight().shape())));
}

TEST(ConvBackend, NamesParseBackAndTheScopeRestoresThePreviousChoice) {
    for (const ConvBackend backend : {ConvBackend::own, ConvBackend::onednn}) {
        EXPECT_EQ(xgrad::parse_conv_backend(xgrad::conv_backend_name(backend)), backend);
    }
    EXPECT_EQ(xgrad::parse_conv_backend("mkldnn"), std::nullopt);
    EXPECT_EQ(xgrad::conv_backend(), ConvBackend::own);
    if (skipWithoutOneDnn()) {
        EXPECT_THROW(xgrad::set_conv_backend(ConvBackend::onednn), std::invalid_argument);
        return;
    }
    {
        const xgrad::ConvBackendScope onednn(ConvBackend::onednn);
        EXPECT_EQ(xgrad::conv_backend(), ConvBackend::onednn);
    }
    EXPECT_EQ(xgrad::conv_backend(), ConvBackend::own);
}

}  // namespace
