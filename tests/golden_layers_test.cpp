// Agreement with PyTorch 1.13: Linear, Conv2d (stride, padding, rectangular kernel, no bias; on
// both backends), MaxPool2d, cross-entropy, and two SGD-momentum and Adam steps, in float, against
// the fixtures of tests/golden/make_golden_layers.py. The error of a tensor is normwise,
// max|xgrad - torch| / max|torch|, and must be at most 1e-5; each is printed.
#include <gtest/gtest.h>

#include <cstdint>
#include <iostream>
#include <string>

#include <xtensor/xarray.hpp>
#include <xtensor/xmath.hpp>
#include <xtensor/xnpy.hpp>

#include "autodiff/autodiff.hpp"
#include "layers/adam.hpp"
#include "layers/conv2d.hpp"
#include "layers/conv_backend.hpp"
#include "layers/cross_entropy.hpp"
#include "layers/linear.hpp"
#include "layers/max_pool2d.hpp"
#include "layers/sgd.hpp"

namespace {

using xgrad::Var;
using Tensor = xt::xarray<float>;

constexpr double tolerance = 1e-5;

template <class T = float>
xt::xarray<T> load(const std::string& case_name, const std::string& name) {
    return xt::load_npy<T>(std::string(XGRAD_GOLDEN_DIR) + "/" + case_name + "_" + name + ".npy");
}

void expectMatches(const std::string& case_name, const std::string& name, const Tensor& actual) {
    const Tensor expected = load(case_name, name);
    ASSERT_EQ(xgrad::to_shape(actual.shape()), xgrad::to_shape(expected.shape())) << case_name << " " << name;
    const double scale = xt::amax(xt::abs(expected))();
    const double error = xt::amax(xt::abs(actual - expected))() / scale;
    std::cout << "golden " << case_name << " " << name << ": relative error " << error << "\n";
    EXPECT_LE(error, tolerance) << case_name << " " << name;
}

Var<float> leaf(const std::string& case_name, const std::string& name) { return Var<float>(load(case_name, name), true); }

// Runs `layer` on the case's x, backpropagates its dy, and compares y, dx and the parameters' gradients.
template <class Layer>
void checkLayer(const std::string& case_name, Layer& layer) {
    for (auto& [name, p] : layer.named_parameters()) p.mutable_value() = load(case_name, name);
    const Var<float> x = leaf(case_name, "x");
    const Var<float> y = layer(x);
    expectMatches(case_name, "y", y.value());
    y.backward(load(case_name, "dy"));
    expectMatches(case_name, "dx", x.grad());
    for (auto& [name, p] : layer.named_parameters()) expectMatches(case_name, "d" + name, p.grad());
}

TEST(GoldenLayers, Linear) {
    xgrad::Linear<float> fc(5, 3);
    checkLayer("linear", fc);
}

TEST(GoldenLayers, Conv2dWithStrideAndPadding) {
    xgrad::Conv2d<float> conv(3, 4, 3, 2, 1);
    checkLayer("conv2d_stride2_pad1", conv);
}

TEST(GoldenLayers, Conv2dRectangularWithoutBias) {
    xgrad::Conv2d<float> conv(2, 3, {2, 3}, {1, 2}, {0, 1}, false);
    checkLayer("conv2d_rect_nobias", conv);
}

// The same two cases with oneDNN's convolution (layers/conv_backend.hpp), where the build has it.
TEST(GoldenLayers, Conv2dOnOneDnn) {
    if (!xgrad::onednn_convolution_available()) GTEST_SKIP() << "this build has no oneDNN";
    const xgrad::ConvBackendScope onednn(xgrad::ConvBackend::onednn);
    xgrad::Conv2d<float> strided(3, 4, 3, 2, 1);
    checkLayer("conv2d_stride2_pad1", strided);
    xgrad::Conv2d<float> rectangular(2, 3, {2, 3}, {1, 2}, {0, 1}, false);
    checkLayer("conv2d_rect_nobias", rectangular);
}

TEST(GoldenLayers, MaxPool2d) {
    xgrad::MaxPool2d<float> pool(2);
    checkLayer("max_pool2d_2x2", pool);
    xgrad::MaxPool2d<float> overlapping(3, 2);
    checkLayer("max_pool2d_3x3_stride2", overlapping);
}

TEST(GoldenLayers, CrossEntropy) {
    const Var<float> logits = leaf("cross_entropy", "logits");
    const Var<float> loss = xgrad::cross_entropy(logits, load<std::int64_t>("cross_entropy", "labels"));
    Tensor value = loss.value();
    value.reshape({1});
    expectMatches("cross_entropy", "loss", value);
    loss.backward();
    expectMatches("cross_entropy", "dlogits", logits.grad());
}

// Two steps of `opt` on the case's p0 with gradients g1 and g2, comparing the parameter after each.
template <class Optimizer>
void checkSteps(const std::string& case_name, Optimizer& opt, Var<float>& p) {
    for (const std::string step : {"1", "2"}) {
        opt.zero_grad();
        xgrad::sum(p * Var<float>(load(case_name, "g" + step))).backward();  // the gradient is g exactly
        opt.step();
        expectMatches(case_name, "p" + step, p.value());
    }
}

TEST(GoldenLayers, SgdMomentumSteps) {
    Var<float> p = leaf("sgd_momentum", "p0");
    xgrad::SGD<float> opt({p}, {.lr = 0.1, .momentum = 0.9, .dampening = 0.1, .weight_decay = 0.01});
    checkSteps("sgd_momentum", opt, p);
    expectMatches("sgd_momentum", "momentum_buffer", *opt.momentum_buffers()[0]);
}

TEST(GoldenLayers, AdamSteps) {
    Var<float> p = leaf("adam", "p0");
    xgrad::Adam<float> opt({p}, {.lr = 0.1, .weight_decay = 0.01});
    checkSteps("adam", opt, p);
    expectMatches("adam", "exp_avg", opt.state()[0].exp_avg);
    expectMatches("adam", "exp_avg_sq", opt.state()[0].exp_avg_sq);
}

}  // namespace
