// BatchNorm1d/2d against PyTorch, in float: the fixtures that tests/golden/make_golden_bn.py
// wrote with torch.nn.BatchNorm1d over (N, C) and (N, C, L) and BatchNorm2d. Compared: the
// training forward and its gradients, the running statistics after three training steps with
// momentum 0.1 and with momentum None, and the eval forward and its gradients. Also
// BatchNormReLUMaxPool2d against torch's F.max_pool2d(F.relu(bn(x)), 2) (the fixtures of
// tests/golden/make_golden_bn_relu_max_pool.py): a training step from given running statistics,
// the statistics after it, and eval with those before. Every element must be within a relative
// error of 1e-5 (|actual - torch| / max(1, |torch|)); the worst error of each comparison is printed.
#include <gtest/gtest.h>

#include <memory>
#include <optional>
#include <stdexcept>
#include <string>

#include <xtensor/xview.hpp>

#include "layers/batch_norm_relu_max_pool.hpp"
#include "layers/normalization/batch_norm.hpp"
#include "tests/golden_compare.hpp"

namespace {

using Array = xt::xarray<float>;
using xgrad::BatchNorm;
using xgrad::Var;

struct Case {
    const char* name;
    std::size_t rank;  // of one batch: 2 and 3 are BatchNorm1d, 4 is BatchNorm2d
};

class GoldenBatchNorm : public testing::TestWithParam<Case> {
protected:
    Array load(const std::string& name) const { return xgrad_test::loadGolden(GetParam().name, name); }

    std::unique_ptr<BatchNorm<float>> make(std::optional<double> momentum) const {
        const std::size_t channels = load("weight").size();
        std::unique_ptr<BatchNorm<float>> bn;
        if (GetParam().rank == 4) {
            bn = std::make_unique<xgrad::BatchNorm2d<float>>(channels, xgrad::BatchNormOptions{.momentum = momentum});
        } else {
            bn = std::make_unique<xgrad::BatchNorm1d<float>>(channels, xgrad::BatchNormOptions{.momentum = momentum});
        }
        Var<float>(*bn->weight()).mutable_value() = load("weight");
        Var<float>(*bn->bias()).mutable_value() = load("bias");
        return bn;
    }

    Array batch(std::size_t step) const { return xt::view(load("x"), step); }

    void expectClose(const Array& actual, const std::string& name) const {
        xgrad_test::expectCloseToGolden(actual, GetParam().name, name);
    }

    // Forward of batch 0 and backward of sum(y * dy), compared with <prefix>y, <prefix>dx, ...
    void expectForwardBackward(BatchNorm<float>& bn, const std::string& prefix) const {
        bn.zero_grad();
        Var<float> x(batch(0), true);
        const Var<float> y = bn(x);
        y.backward(load("dy"));
        expectClose(y.value(), prefix + "y");
        expectClose(x.grad(), prefix + "dx");
        expectClose(bn.weight()->grad(), prefix + "dweight");
        expectClose(bn.bias()->grad(), prefix + "dbias");
    }
};

TEST_P(GoldenBatchNorm, TrainingEvalAndRunningStatisticsMatchTorch) {
    auto bn = make(0.1);
    expectForwardBackward(*bn, "");
    bn->forward(Var<float>(batch(1)));
    bn->forward(Var<float>(batch(2)));
    expectClose(*bn->running_mean(), "running_mean");
    expectClose(*bn->running_var(), "running_var");
    bn->eval();
    expectForwardBackward(*bn, "eval_");

    auto cumulative = make(std::nullopt);
    for (std::size_t step = 0; step < 3; ++step) cumulative->forward(Var<float>(batch(step)));
    expectClose(*cumulative->running_mean(), "cumulative_running_mean");
    expectClose(*cumulative->running_var(), "cumulative_running_var");
}

INSTANTIATE_TEST_SUITE_P(Torch, GoldenBatchNorm,
                         testing::Values(Case{"bn1d_nc", 2}, Case{"bn1d_ncl", 3}, Case{"bn2d", 4}),
                         [](const testing::TestParamInfo<Case>& info) { return std::string(info.param.name); });

// ---- BatchNormReLUMaxPool2d: x (5, 3, 7, 6), the last row in the statistics but in no window ----

constexpr const char* kPoolCase = "bn_relu_max_pool2d";

Array loadPool(const std::string& name) { return xgrad_test::loadGolden(kPoolCase, name); }

// A layer with the fixture's weight, bias and running statistics before the training step.
std::unique_ptr<xgrad::BatchNormReLUMaxPool2d<float>> makePool() {
    auto layer = std::make_unique<xgrad::BatchNormReLUMaxPool2d<float>>(loadPool("weight").size());
    Var<float>(*layer->weight()).mutable_value() = loadPool("weight");
    Var<float>(*layer->bias()).mutable_value() = loadPool("bias");
    for (auto& [name, buffer] : layer->named_buffers()) {
        if (name == "running_mean" || name == "running_var") *buffer.tensor = loadPool(name);
    }
    if (*layer->running_mean() != loadPool("running_mean") || *layer->running_var() != loadPool("running_var")) {
        throw std::logic_error("the running statistics were not set");
    }
    return layer;
}

// Forward of x and backward of sum(y * dy), compared with <prefix>y, <prefix>dx, ...
void expectPoolForwardBackward(xgrad::BatchNormReLUMaxPool2d<float>& layer, const std::string& prefix) {
    layer.zero_grad();
    Var<float> x(loadPool("x"), true);
    const Var<float> y = layer(x);
    y.backward(loadPool("dy"));
    xgrad_test::expectCloseToGolden(y.value(), kPoolCase, prefix + "y");
    xgrad_test::expectCloseToGolden(x.grad(), kPoolCase, prefix + "dx");
    xgrad_test::expectCloseToGolden(layer.weight()->grad(), kPoolCase, prefix + "dweight");
    xgrad_test::expectCloseToGolden(layer.bias()->grad(), kPoolCase, prefix + "dbias");
}

TEST(GoldenBatchNormReLUMaxPool2d, TrainingStepAndEvalMatchTorch) {
    auto trained = makePool();
    expectPoolForwardBackward(*trained, "");
    xgrad_test::expectCloseToGolden(*trained->running_mean(), kPoolCase, "running_mean_after");
    xgrad_test::expectCloseToGolden(*trained->running_var(), kPoolCase, "running_var_after");
    xgrad_test::expectCloseToGolden(Array{static_cast<float>(*trained->num_batches_tracked())}, kPoolCase,
                                    "num_batches_tracked_after");

    auto evaluated = makePool();
    evaluated->eval();
    expectPoolForwardBackward(*evaluated, "eval_");
}

}  // namespace
