// Batch Renorm, Ghost Batch Norm, Filter Response Norm with TLU and weight-standardized Conv2d
// against the references of tests/golden/make_golden_norms.py (torch autograd, each checked there
// against an independent computation), in float: outputs, the gradients of sum(y * dy), the
// running statistics after a training step and the eval forward and gradients that follow. Every
// element must be within a relative error of 1e-5 (|actual - reference| / max(1, |reference|));
// the worst error of each comparison is printed.
#include <gtest/gtest.h>

#include <string>

#include "layers/conv2d.hpp"
#include "layers/normalization/batch_renorm.hpp"
#include "layers/normalization/filter_response_norm.hpp"
#include "layers/normalization/ghost_batch_norm.hpp"
#include "tests/golden_compare.hpp"

namespace {

using Array = xt::xarray<float>;
using xgrad::Var;

Array load(const std::string& fixture, const std::string& name) { return xgrad_test::loadGolden(fixture, name); }

void expectClose(const std::string& fixture, const Array& actual, const std::string& name) {
    xgrad_test::expectCloseToGolden(actual, fixture, name);
}

// Forward of the fixture's x and backward of sum(y * dy), compared with <prefix>y, <prefix>dx and
// <prefix>d<parameter> for each parameter of the layer.
void expectForwardBackward(const std::string& fixture, xgrad::Module<float>& layer, const std::string& prefix = "") {
    layer.zero_grad();
    Var<float> x(load(fixture, "x"), true);
    const Var<float> y = layer(x);
    y.backward(load(fixture, "dy"));
    expectClose(fixture, y.value(), prefix + "y");
    expectClose(fixture, x.grad(), prefix + "dx");
    for (const auto& [name, p] : layer.named_parameters()) expectClose(fixture, p.grad(), prefix + "d" + name);
}

void loadParameters(const std::string& fixture, xgrad::Module<float>& layer) {
    for (auto [name, p] : layer.named_parameters()) p.mutable_value() = load(fixture, name);
}

xt::xarray<float>& buffer(xgrad::Module<float>& layer, const std::string& name) {
    for (auto& [n, b] : layer.named_buffers()) {
        if (n == name) return *b.tensor;
    }
    throw std::logic_error("no buffer " + name);
}

// One training step from the fixture's running statistics, then eval with those it moved to.
void expectBatchRenorm(const std::string& fixture, const xgrad::RenormSchedule& schedule) {
    xgrad::BatchRenorm2d<float> renorm(load(fixture, "weight").size(), {.schedule = schedule});
    loadParameters(fixture, renorm);
    buffer(renorm, "running_mean") = load(fixture, "running_mean");
    buffer(renorm, "running_var") = load(fixture, "running_var");
    expectForwardBackward(fixture, renorm);
    expectClose(fixture, *renorm.running_mean(), "running_mean_after");
    expectClose(fixture, *renorm.running_var(), "running_var_after");
    renorm.eval();
    expectForwardBackward(fixture, renorm, "eval_");
}

TEST(GoldenBatchRenorm, ClippingRAndDMatchesTheReference) {
    // rmax 3 and dmax 5 from the first step on.
    expectBatchRenorm("batch_renorm2d_clipped", {.relax_from = 0, .rmax_final_at = 0, .dmax_final_at = 0});
}

TEST(GoldenBatchRenorm, RmaxOneAndDmaxZeroMatchesTheReference) {
    // The paper's schedule at step 0.
    expectBatchRenorm("batch_renorm2d_r1_d0", {});
}

TEST(GoldenGhostBatchNorm, ChunksOfThreeThreeAndOneMatchTheReference) {
    const std::string fixture = "ghost_batch_norm2d_vb3";
    xgrad::GhostBatchNorm2d<float> ghost(load(fixture, "weight").size(), 3);
    loadParameters(fixture, ghost);
    expectForwardBackward(fixture, ghost);
    expectClose(fixture, *ghost.running_mean(), "running_mean");
    expectClose(fixture, *ghost.running_var(), "running_var");
    expectClose(fixture, Array{static_cast<float>(*ghost.num_batches_tracked())}, "num_batches_tracked");
    ghost.eval();
    expectForwardBackward(fixture, ghost, "eval_");
}

TEST(GoldenFilterResponseNorm, WithTluMatchesTheReference) {
    const std::string fixture = "filter_response_norm2d";
    xgrad::FilterResponseNorm2d<float> frn(load(fixture, "weight").size());
    loadParameters(fixture, frn);
    expectForwardBackward(fixture, frn);
}

TEST(GoldenWeightStandardization, ConvolutionsMatchTheReference) {
    for (const bool bias : {true, false}) {
        const std::string fixture = bias ? "std_conv2d_bias" : "std_conv2d_nobias";
        const auto shape = load(fixture, "weight").shape();
        xgrad::Conv2d<float> conv(shape[1], shape[0], {shape[2], shape[3]},
                                  {.padding = 1, .bias = bias, .weight_standardization = true});
        loadParameters(fixture, conv);
        expectForwardBackward(fixture, conv);
    }
}

}  // namespace
