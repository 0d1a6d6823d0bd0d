// GroupNorm, LayerNorm and InstanceNorm1d/2d against PyTorch, in float: the fixtures that
// tests/golden/make_golden_norms.py wrote with torch.nn.GroupNorm, LayerNorm and InstanceNorm1d/2d
// (its docstring lists the cases). Compared: the training forward and its gradients; GroupNorm's
// and LayerNorm's eval (the same computation); InstanceNorm's running statistics after two
// training batches and its eval forward and gradients with them, or, without running statistics,
// its eval as its training. Every element must be within a relative error of 1e-5
// (|actual - torch| / max(1, |torch|)); the worst error of each comparison is printed.
#include <gtest/gtest.h>

#include <functional>
#include <memory>
#include <ostream>
#include <string>

#include "layers/normalization/group_norm.hpp"
#include "layers/normalization/instance_norm.hpp"
#include "layers/normalization/layer_norm.hpp"
#include "tests/golden_compare.hpp"

namespace {

using Array = xt::xarray<float>;
using xgrad::Module;
using xgrad::Var;

struct Case {
    const char* name;
    // The layer, given the fixture's weight (for its shape).
    std::function<std::unique_ptr<Module<float>>(const Array& weight)> make;
    bool affine = true;
    bool track = false;  // InstanceNorm's running statistics: fixtures x2, running_*, eval_*
};

void PrintTo(const Case& c, std::ostream* os) { *os << c.name; }

class GoldenGroupNorms : public testing::TestWithParam<Case> {
protected:
    Array load(const std::string& name) const { return xgrad_test::loadGolden(GetParam().name, name); }

    // Without running statistics, eval computes what training does: compared with the same fixtures.
    void expectClose(const Array& actual, const std::string& name) const {
        const bool as_training = name.starts_with("eval_") && !GetParam().track;
        xgrad_test::expectCloseToGolden(actual, GetParam().name, name, as_training ? name.substr(5) : name);
    }

    // Forward of x and backward of sum(y * dy), compared with <prefix>y, <prefix>dx, ...
    void expectForwardBackward(Module<float>& layer, const std::string& prefix) const {
        layer.zero_grad();
        Var<float> x(load("x"), true);
        const Var<float> y = layer(x);
        y.backward(load("dy"));
        expectClose(y.value(), prefix + "y");
        expectClose(x.grad(), prefix + "dx");
        for (const auto& [name, p] : layer.named_parameters()) expectClose(p.grad(), prefix + "d" + name);
    }
};

TEST_P(GoldenGroupNorms, TrainingEvalAndRunningStatisticsMatchTorch) {
    const Case& c = GetParam();
    const Array weight = c.affine ? load("weight") : Array();
    const auto layer = c.make(weight);
    for (const auto& [name, p] : layer->named_parameters()) Var<float>(p).mutable_value() = load(name);
    expectForwardBackward(*layer, "");
    if (c.track) {
        layer->forward(Var<float>(load("x2")));
        for (const auto& [name, b] : layer->named_buffers()) {
            if (b.tensor) {
                expectClose(*b.tensor, name);
            } else {
                EXPECT_EQ(*b.counter, 0) << "torch 1.13 does not count InstanceNorm's batches";
            }
        }
    }
    layer->eval();
    expectForwardBackward(*layer, "eval_");
}

template <class L>
std::function<std::unique_ptr<Module<float>>(const Array&)> instance(bool affine, bool track) {
    return [=](const Array&) {
        return std::make_unique<L>(4, xgrad::InstanceNormOptions{.affine = affine, .track_running_stats = track});
    };
}

std::function<std::unique_ptr<Module<float>>(const Array&)> group_norm(std::size_t groups) {
    return [=](const Array& weight) { return std::make_unique<xgrad::GroupNorm<float>>(groups, weight.size()); };
}

std::unique_ptr<Module<float>> layer_norm(const Array& weight) {
    return std::make_unique<xgrad::LayerNorm<float>>(xgrad::to_shape(weight.shape()));
}

using xgrad::InstanceNorm1d;
using xgrad::InstanceNorm2d;

INSTANTIATE_TEST_SUITE_P(
    Torch, GoldenGroupNorms,
    testing::Values(Case{"group_norm_g3_c6", group_norm(3)}, Case{"group_norm_g1_c4", group_norm(1)},
                    Case{"group_norm_g4_c4", group_norm(4)}, Case{"group_norm_g2_c32_nc", group_norm(2)},
                    Case{"group_norm_g2_c6_short", group_norm(2)}, Case{"layer_norm_chw", layer_norm},
                    Case{"layer_norm_last", layer_norm},
                    Case{"instance_norm1d", instance<InstanceNorm1d<float>>(false, false), false, false},
                    Case{"instance_norm1d_affine", instance<InstanceNorm1d<float>>(true, false), true, false},
                    Case{"instance_norm1d_track", instance<InstanceNorm1d<float>>(false, true), false, true},
                    Case{"instance_norm1d_affine_track", instance<InstanceNorm1d<float>>(true, true), true, true},
                    Case{"instance_norm2d", instance<InstanceNorm2d<float>>(false, false), false, false},
                    Case{"instance_norm2d_affine", instance<InstanceNorm2d<float>>(true, false), true, false},
                    Case{"instance_norm2d_track", instance<InstanceNorm2d<float>>(false, true), false, true},
                    Case{"instance_norm2d_affine_track", instance<InstanceNorm2d<float>>(true, true), true, true}),
    [](const testing::TestParamInfo<Case>& info) { return std::string(info.param.name); });

}  // namespace
