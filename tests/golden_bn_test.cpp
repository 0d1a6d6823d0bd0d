// BatchNorm1d/2d against PyTorch, in float: the fixtures that tests/golden/make_golden_bn.py
// wrote with torch.nn.BatchNorm1d over (N, C) and (N, C, L) and BatchNorm2d. Compared: the
// training forward and its gradients, the running statistics after three training steps with
// momentum 0.1 and with momentum None, and the eval forward and its gradients. Every element
// must be within a relative error of 1e-5 (|actual - torch| / max(1, |torch|)); the worst error
// of each comparison is printed.
#include <gtest/gtest.h>

#include <memory>
#include <optional>
#include <string>

#include <xtensor/xview.hpp>

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

}  // namespace
