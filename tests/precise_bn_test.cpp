// recalibrate_batch_norm (PreciseBN): the running statistics of BatchNorm2d (or BatchNormReLU2d)
// and BatchNorm1d layers nested behind other layers equal the averages of the per-batch means and
// unbiased variances, computed here with xtensor in double from what each layer sees, in double
// and in float, on small and large shapes; every other piece of state (parameters, counters,
// momenta, each module's mode, Dropout's generator) is as before; agreement with fvcore's rule
// written in torch (tests/golden/make_golden_precise_bn.py); layers without running statistics
// or that no forward reaches; and the errors (no batches, a batch of the wrong shape, a source
// that throws), which leave the model exactly as it was.
#include <gtest/gtest.h>
#include <rapidcheck/gtest.h>

#include <cmath>
#include <cstdint>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include <xtensor/xmanipulation.hpp>
#include <xtensor/xnpy.hpp>
#include <xtensor/xview.hpp>

#include "layers/activations.hpp"
#include "layers/normalization/batch_norm.hpp"
#include "layers/conv2d.hpp"
#include "layers/dropout.hpp"
#include "layers/linear.hpp"
#include "layers/normalization/precise_bn.hpp"
#include "layers/sequential.hpp"
#include "tests/batch_norm_state.hpp"
#include "tests/generators.hpp"

namespace {

using namespace xgrad_test;
using xgrad::BatchNorm;
using xgrad::BatchNorm1d;
using xgrad::BatchNorm2d;
using xgrad::BatchNormReLU2d;
using xgrad::Module;
using xgrad::Sequential;

constexpr double eps = 1e-5;

// ---- the model's state, to compare before and after ----

template <class T>
struct State {
    std::map<std::string, xt::xarray<T>> tensors;  // parameters and buffers, by state_dict name
    std::map<std::string, std::int64_t> counters;
    std::map<std::string, bool> training;  // by module path, "" for the model
    std::map<std::string, std::optional<double>> momenta;
    std::map<std::string, std::mt19937_64> generators;
};

template <class T>
void collectModuleState(Module<T>& module, State<T>& state) {
    state.training[module.path()] = module.is_training();
    if (auto* bn = dynamic_cast<BatchNorm<T>*>(&module)) state.momenta[module.path()] = bn->options().momentum;
    if (xgrad::Rng* generator = module.generator()) state.generators[module.path()] = generator->engine();
    for (auto& [name, child] : module.named_children()) collectModuleState(*child, state);
}

template <class T>
State<T> stateOf(Module<T>& model) {
    State<T> state;
    for (const auto& [name, p] : model.named_parameters()) state.tensors[name] = p.value();
    for (const auto& [name, b] : model.named_buffers()) {
        if (b.tensor) state.tensors[name] = *b.tensor;
        if (b.counter) state.counters[name] = *b.counter;
    }
    collectModuleState(model, state);
    return state;
}

bool isRunningStatistic(const std::string& name) {
    return name.ends_with("running_mean") || name.ends_with("running_var");
}

// The first difference between two states ("" if none); running statistics are compared only
// if asked.
template <class T>
std::string firstDifference(const State<T>& before, const State<T>& after, bool with_running_statistics) {
    for (const auto& [name, value] : before.tensors) {
        if (!with_running_statistics && isRunningStatistic(name)) continue;
        if (!(after.tensors.at(name) == value)) return name + " changed";
    }
    for (const auto& [name, value] : before.counters) {
        if (after.counters.at(name) != value) return name + " went from " + std::to_string(value) + " to " +
                                                      std::to_string(after.counters.at(name));
    }
    for (const auto& [path, value] : before.training) {
        if (after.training.at(path) != value) return "the mode of '" + path + "' changed";
    }
    for (const auto& [path, value] : before.momenta) {
        if (after.momenta.at(path) != value) return "the momentum of " + path + " changed";
    }
    for (const auto& [path, value] : before.generators) {
        if (after.generators.at(path) != value) return "the generator of " + path + " moved";
    }
    return "";
}

// ---- the model under test and the reference statistics ----

// features (conv1, bn1 and relu1, or bn1 as BatchNormReLU2d), flatten, fc1, bn2 (BatchNorm1d),
// dropout, fc2: what bn2 sees depends on conv1, bn1's batch statistics and affine parameters,
// and fc1. The Dropout after bn2 changes nothing bn2 sees, but draws from its generator.
template <class T>
struct Model {
    std::shared_ptr<Sequential<T>> model = std::make_shared<Sequential<T>>();
    std::shared_ptr<Sequential<T>> features = std::make_shared<Sequential<T>>();
    std::shared_ptr<xgrad::Conv2d<T>> conv1;
    std::shared_ptr<BatchNorm<T>> bn1;
    std::shared_ptr<xgrad::Linear<T>> fc1;
    std::shared_ptr<BatchNorm<T>> bn2;

    Model(std::size_t in_channels, std::size_t channels, std::size_t pixels, std::size_t features_out, bool fused_relu) {
        xgrad::Rng rng(3);
        model->add("features", features);
        conv1 = features->add("conv1", std::make_shared<xgrad::Conv2d<T>>(in_channels, channels, 3, 1, 1, true, rng));
        if (fused_relu) {
            bn1 = features->add("bn1", std::make_shared<BatchNormReLU2d<T>>(channels));
        } else {
            bn1 = features->add("bn1", std::make_shared<BatchNorm2d<T>>(channels));
            features->add("relu1", std::make_shared<xgrad::ReLU<T>>());
        }
        model->add("flatten", std::make_shared<xgrad::Flatten<T>>());
        fc1 = model->add("fc1", std::make_shared<xgrad::Linear<T>>(channels * pixels, features_out, true, rng));
        bn2 = model->add("bn2", std::make_shared<BatchNorm1d<T>>(features_out, xgrad::BatchNormOptions{.momentum = std::nullopt}));
        model->add("dropout", std::make_shared<xgrad::Dropout<T>>(0.5, 9));
        model->add("fc2", std::make_shared<xgrad::Linear<T>>(features_out, 3, true, rng));
    }
};

// Per channel of h (N, C, ...): the mean, and the centred sum of squares.
struct Moments {
    Array mean, squares;
    double count;
    Array unbiased() const { return squares / (count - 1); }
    Array biased() const { return squares / count; }
};

Moments momentsOf(const Array& h) {
    const std::size_t n = h.shape()[0], c = h.shape()[1], s = h.size() / (n * c);
    const Array h3 = xt::reshape_view(h, {n, c, s});
    const Array mean = xt::mean(h3, {0, 2});
    const Array centred = h3 - xt::view(mean, xt::newaxis(), xt::all(), xt::newaxis());
    return {mean, xt::sum(centred * centred, {0, 2}), static_cast<double>(n * s)};
}

// BN in training then ReLU, over (N, C, S) seen through a per-channel broadcast.
Array batchNormRelu(const Array& h, const Moments& m, const Array& gamma, const Array& beta) {
    const std::size_t n = h.shape()[0], c = h.shape()[1], s = h.size() / (n * c);
    const auto channel = [](const Array& v) { return xt::view(v, xt::newaxis(), xt::all(), xt::newaxis()); };
    const Array h3 = xt::reshape_view(h, {n, c, s});
    const Array y = (h3 - channel(m.mean)) / xt::sqrt(channel(m.biased()) + eps) * channel(gamma) + channel(beta);
    return xt::reshape_view(xt::maximum(y, 0.0), h.shape());
}

template <class T>
Array inDouble(const xt::xarray<T>& a) {
    return xt::cast<double>(a);
}

template <class T>
Array forwardOf(Module<T>& layer, const Array& x) {
    xgrad::NoGrad no_grad;
    return inDouble<T>(layer(Var<T>(xt::xarray<T>(xt::cast<T>(x)))).value());
}

// What recalibration must give: per BN layer, the averages of the batch means and unbiased variances.
struct Expected {
    Array bn1_mean, bn1_var, bn2_mean, bn2_var;
};

template <class T>
Expected expectedStatistics(Model<T>& m, const std::vector<Array>& batches) {
    const Array gamma = inDouble<T>(m.bn1->weight()->value());
    const Array beta = inDouble<T>(m.bn1->bias()->value());
    Expected e{xt::zeros<double>({m.bn1->num_features()}), xt::zeros<double>({m.bn1->num_features()}),
               xt::zeros<double>({m.bn2->num_features()}), xt::zeros<double>({m.bn2->num_features()})};
    for (const Array& x : batches) {
        const Array h1 = forwardOf(*m.conv1, x);
        const Moments m1 = momentsOf(h1);
        const Array z1 = batchNormRelu(h1, m1, gamma, beta);
        const Moments m2 = momentsOf(forwardOf(*m.fc1, Array(xt::reshape_view(z1, {x.shape()[0], z1.size() / x.shape()[0]}))));
        e.bn1_mean += m1.mean;
        e.bn1_var += m1.unbiased();
        e.bn2_mean += m2.mean;
        e.bn2_var += m2.unbiased();
    }
    const auto k = static_cast<double>(batches.size());
    return {e.bn1_mean / k, e.bn1_var / k, e.bn2_mean / k, e.bn2_var / k};
}

template <class T>
xgrad::BatchSource<T> sourceOf(const std::vector<Array>& batches) {
    return [&batches](std::size_t i) { return xt::xarray<T>(xt::cast<T>(batches.at(i))); };
}

// Running statistics, affine parameters and counters away from the defaults, so that leaving
// any of them as it was, or changing it, shows.
template <class T>
void drawState(Model<T>& m) {
    for (auto* bn : {m.bn1.get(), m.bn2.get()}) {
        const std::size_t c = bn->num_features();
        buffer(*bn, "running_mean") = xt::cast<T>(*genArray({c}, anywhere(-2, 2)));
        buffer(*bn, "running_var") = xt::cast<T>(*genArray({c}, anywhere(0.25, 4)));
        setAffine<T>(*bn, xt::cast<T>(*genArray({c}, anywhere(-2, 2))), xt::cast<T>(*genArray({c}, anywhere(-2, 2))));
    }
    for (auto& [name, b] : m.model->named_buffers()) {
        if (b.counter) *b.counter = *uniformIn<std::int64_t>(0, 100);
    }
}

// ---- the statistics ----

// Drawn shapes (one in eight large: 32·16·16 values per channel of bn1, 16·16·16 inputs to fc1), batch
// counts, values, modes (the model's and, apart, the features'), and BatchNormReLU2d or
// BatchNorm2d then ReLU.
template <class T>
void checkRecalibration(double tolerance) {
    const bool large = *uniformIn(0, 8) == 0;
    const std::size_t n = large ? 32 : *uniformIn<std::size_t>(2, 7);
    const std::size_t in_channels = *uniformIn<std::size_t>(1, 3);
    const std::size_t height = large ? 16 : *uniformIn<std::size_t>(1, 5);
    const std::size_t width = large ? 16 : *uniformIn<std::size_t>(1, 5);
    const std::size_t channels = large ? 16 : *uniformIn<std::size_t>(1, 5);
    const std::size_t features_out = large ? 64 : *uniformIn<std::size_t>(1, 6);
    const std::size_t count = *uniformIn<std::size_t>(1, 5);
    Model<T> m(in_channels, channels, height * width, features_out, *rc::gen::arbitrary<bool>());
    drawState(m);
    m.model->train(*rc::gen::arbitrary<bool>());
    m.features->train(*rc::gen::arbitrary<bool>());
    std::vector<Array> batches;
    for (std::size_t i = 0; i < count; ++i) batches.push_back(*genBulkArray({n, in_channels, height, width}, anywhere(-2, 2)));

    const State<T> before = stateOf(*m.model);
    const Expected expected = expectedStatistics(m, batches);
    RC_ASSERT(xgrad::recalibrate_batch_norm<T>(*m.model, count, sourceOf<T>(batches)) == 2u);
    checkClose(inDouble<T>(*m.bn1->running_mean()), expected.bn1_mean, tolerance, "bn1 running_mean");
    checkClose(inDouble<T>(*m.bn1->running_var()), expected.bn1_var, tolerance, "bn1 running_var");
    checkClose(inDouble<T>(*m.bn2->running_mean()), expected.bn2_mean, tolerance, "bn2 running_mean");
    checkClose(inDouble<T>(*m.bn2->running_var()), expected.bn2_var, tolerance, "bn2 running_var");
    const std::string difference = firstDifference(before, stateOf(*m.model), false);
    if (!difference.empty()) RC_FAIL(difference);
}

RC_GTEST_PROP(PreciseBnStatistics, AreTheAveragesOfBatchMeansAndUnbiasedVariancesInDouble, ()) {
    checkRecalibration<double>(1e-12);
}

// The library sums in double either way; what differs is float's rounding of each layer's output.
RC_GTEST_PROP(PreciseBnStatistics, AreTheAveragesOfBatchMeansAndUnbiasedVariancesInFloat, ()) {
    checkRecalibration<float>(1e-4);
}

template <class V = float>
xt::xarray<V> golden(const std::string& name) {
    return xt::load_npy<V>(std::string(XGRAD_GOLDEN_DIR) + "/precise_bn_" + name + ".npy");
}

TEST(PreciseBnStatistics, MatchFvcoresRuleInTorch) {
    Model<float> m(2, 3, 16, 5, false);
    for (auto& [name, p] : m.model->named_parameters()) p.mutable_value() = golden(name);
    for (auto& [name, b] : m.model->named_buffers()) {
        if (b.tensor) *b.tensor = golden(name);
        if (b.counter) *b.counter = golden<std::int64_t>(name)(0);
    }
    const xt::xarray<float> x = golden("x");
    std::vector<Array> batches;
    for (std::size_t i = 0; i < x.shape()[0]; ++i) batches.push_back(inDouble<float>(xt::view(x, i)));
    const State<float> before = stateOf(*m.model);
    ASSERT_EQ(xgrad::recalibrate_batch_norm<float>(*m.model, batches.size(), sourceOf<float>(batches)), 2u);
    for (const auto& [name, bn] : {std::pair{"bn1", m.bn1}, std::pair{"bn2", m.bn2}}) {
        for (const std::string statistic : {"mean", "var"}) {
            const xt::xarray<float> expected = golden(std::string(name) + ".recalibrated_" + statistic);
            const xt::xarray<float> error = xt::abs(buffer(*bn, "running_" + statistic) - expected);
            const double relative = xt::amax(error)() / xt::amax(xt::abs(expected))();
            std::cout << "golden precise_bn " << name << " running_" << statistic << ": relative error " << relative << "\n";
            EXPECT_LE(relative, 1e-5) << name << " running_" << statistic;
        }
    }
    EXPECT_EQ(firstDifference(before, stateOf(*m.model), false), "");
}

// ---- which layers ----

TEST(PreciseBnLayers, AModelWithoutBatchNormIsUntouchedAndRunsNoForward) {
    Sequential<double> model{std::make_shared<xgrad::Linear<double>>(3, 4), std::make_shared<xgrad::ReLU<double>>(),
                             std::make_shared<xgrad::Dropout<double>>(0.5, 1), std::make_shared<xgrad::Linear<double>>(4, 2)};
    model.eval();
    const State<double> before = stateOf(model);
    std::size_t asked = 0;
    const auto source = [&asked](std::size_t) {
        ++asked;
        return Array(xt::ones<double>({2, 3}));
    };
    EXPECT_EQ(xgrad::recalibrate_batch_norm<double>(model, 3, source), 0u);
    EXPECT_EQ(asked, 0u);
    EXPECT_EQ(firstDifference(before, stateOf(model), true), "");
}

// bn_tracked sees the output of a BN without running statistics: per channel mean 0 and
// biased variance var / (var + eps).
TEST(PreciseBnLayers, LayersWithoutRunningStatisticsAreSkipped) {
    Sequential<double> model;
    model.add("bn_untracked", std::make_shared<BatchNorm1d<double>>(2, xgrad::BatchNormOptions{.track_running_stats = false}));
    auto tracked = model.add("bn_tracked", std::make_shared<BatchNorm1d<double>>(2));
    const std::vector<Array> batches{Array{{1.0, -2.0}, {3.0, 5.0}, {4.0, 0.5}}, Array{{0.0, 1.0}, {2.0, 1.5}, {-1.0, 7.0}}};
    Array expected_var = xt::zeros<double>({2});
    for (const Array& x : batches) {
        const Moments m = momentsOf(x);
        expected_var += m.biased() / (m.biased() + eps) * (m.count / (m.count - 1));
    }
    EXPECT_EQ(xgrad::recalibrate_batch_norm<double>(model, 2, sourceOf<double>(batches)), 1u);
    EXPECT_LE(xt::amax(xt::abs(*tracked->running_mean()))(), 1e-15);
    EXPECT_LE(xt::amax(xt::abs(*tracked->running_var() - expected_var / 2.0))(), 1e-14);
}

// A module holding two BN layers, whose forward uses one.
struct OneOfTwo : Module<double> {
    std::shared_ptr<BatchNorm1d<double>> used = register_module("used", std::make_shared<BatchNorm1d<double>>(2));
    std::shared_ptr<BatchNorm1d<double>> unused = register_module("unused", std::make_shared<BatchNorm1d<double>>(2));
    Var<double> forward(const Var<double>& x) override { return (*used)(x); }
    std::string describe() const override { return "OneOfTwo"; }
};

TEST(PreciseBnLayers, ALayerNoForwardReachesKeepsItsStatistics) {
    OneOfTwo model;
    buffer(*model.unused, "running_mean") = Array{0.25, -0.5};
    buffer(*model.unused, "running_var") = Array{2.0, 3.0};
    const std::vector<Array> batches{Array{{1.0, -2.0}, {3.0, 5.0}}};
    EXPECT_EQ(xgrad::recalibrate_batch_norm<double>(model, 1, sourceOf<double>(batches)), 1u);
    EXPECT_EQ(*model.used->running_mean(), (Array{2.0, 1.5}));
    EXPECT_EQ(*model.used->running_var(), (Array{2.0, 24.5}));
    EXPECT_EQ(*model.unused->running_mean(), (Array{0.25, -0.5}));
    EXPECT_EQ(*model.unused->running_var(), (Array{2.0, 3.0}));
}

// ---- errors leave the model as it was ----

// The model under test with running means away from 0, in eval mode but for its features, and
// three batches of (4, 2, 3, 3).
struct ErrorCase {
    Model<double> m{2, 3, 9, 4, false};
    std::vector<Array> batches;
    ErrorCase() {
        std::mt19937 rng(5);
        std::normal_distribution<double> normal;
        for (auto* bn : {m.bn1.get(), m.bn2.get()}) {
            for (auto& v : buffer(*bn, "running_mean")) v = normal(rng);
        }
        m.model->eval();
        m.features->train();
        for (int i = 0; i < 3; ++i) {
            Array x = Array::from_shape({4, 2, 3, 3});
            for (auto& v : x) v = normal(rng);
            batches.push_back(x);
        }
    }
};

TEST(PreciseBnErrors, NoBatchesIsAnErrorAndChangesNothing) {
    ErrorCase c;
    const State<double> before = stateOf(*c.m.model);
    try {
        xgrad::recalibrate_batch_norm<double>(*c.m.model, 0, sourceOf<double>(c.batches));
        FAIL() << "0 batches were accepted";
    } catch (const std::invalid_argument& e) {
        EXPECT_EQ(std::string(e.what()),
                  "recalibrate_batch_norm: 0 batches given; the running statistics are averages over at least 1 batch");
    }
    EXPECT_EQ(firstDifference(before, stateOf(*c.m.model), true), "");
}

// The third batch is 4x4: conv1 and bn1 take it (bn1's statistics already moved), fc1 does not.
TEST(PreciseBnErrors, ABatchOfTheWrongShapeNamesTheLayerAndChangesNothing) {
    ErrorCase c;
    c.batches[2] = xt::ones<double>({4, 2, 4, 4});
    const State<double> before = stateOf(*c.m.model);
    try {
        xgrad::recalibrate_batch_norm<double>(*c.m.model, 3, sourceOf<double>(c.batches));
        FAIL() << "a batch of the wrong shape was accepted";
    } catch (const xgrad::ShapeError& e) {
        EXPECT_EQ(std::string(e.what()),
                  "recalibrate_batch_norm: batch 2 (counting from 0) of 3: fc1 (Linear(in_features=27, out_features=4)): "
                  "expected input (N, 27), got (4, 48)");
    }
    EXPECT_EQ(firstDifference(before, stateOf(*c.m.model), true), "");
}

TEST(PreciseBnErrors, ASourceThatThrowsChangesNothing) {
    ErrorCase c;
    const State<double> before = stateOf(*c.m.model);
    const auto source = [&c](std::size_t i) -> xt::xarray<double> {
        if (i == 2) throw std::runtime_error("the data ran out");
        return c.batches[i];
    };
    EXPECT_THROW(xgrad::recalibrate_batch_norm<double>(*c.m.model, 3, source), std::runtime_error);
    EXPECT_EQ(firstDifference(before, stateOf(*c.m.model), true), "");
}

}  // namespace
