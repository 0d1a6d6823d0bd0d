// The BatchNorm fusions: BatchNormReLU1d/2d (BN then ReLU in one node) against central
// differences and, bit for bit, against BatchNorm1d/2d followed by ReLU (values, gradients,
// running statistics; in training and in eval), its kernels on large shapes in float, and its
// state; BatchNormReLUMaxPool2d (BN, ReLU and MaxPool2d(2) in one node) against central
// differences, against BatchNormReLU2d then MaxPool2d(2) (values and running statistics bit for
// bit, gradients within rounding; many samples, wide rows, a large shape in float, frozen inputs),
// at 1 and 2 threads, its errors and its state; fold_batch_norm against Conv2d then BatchNorm2d in
// eval, in double and in float, and its errors.
#include <gtest/gtest.h>
#include <rapidcheck/gtest.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <iomanip>
#include <limits>
#include <memory>
#include <optional>
#include <random>
#include <sstream>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include <tbb/task_arena.h>

#include "autodiff/elementwise_ops.hpp"
#include "layers/activations.hpp"
#include "layers/batch_norm_relu_max_pool.hpp"
#include "layers/fold_batch_norm.hpp"
#include "layers/max_pool2d.hpp"
#include "layers/normalization/batch_norm.hpp"
#include "layers/sequential.hpp"
#include "tests/batch_norm_kernels.hpp"
#include "tests/batch_norm_state.hpp"
#include "tests/error_message.hpp"
#include "tests/generators.hpp"

namespace {

using namespace xgrad_test;
using Inputs = std::vector<Var<double>>;
using xgrad::BatchNorm;
using xgrad::BatchNormOptions;
using xgrad::Conv2d;

// ---- helpers ----

std::size_t perChannel(const Shape& shape) { return xgrad::element_count(shape) / shape[1]; }

// An input shape of rank 2 to 4 with at least `min_per_channel` values per channel.
rc::Gen<Shape> genBatchShape(std::size_t min_per_channel) {
    return rc::gen::suchThat(genShape(2, 4), [min_per_channel](const Shape& s) { return perChannel(s) >= min_per_channel; });
}

// The BN of the rank's kind, plain or with the ReLU fused: BatchNorm(ReLU)1d for rank 2 and 3,
// BatchNorm(ReLU)2d for rank 4.
template <class T = double>
std::unique_ptr<BatchNorm<T>> makeBatchNorm(bool relu, std::size_t rank, std::size_t channels, BatchNormOptions o = {}) {
    if (rank == 4) {
        if (relu) return std::make_unique<xgrad::BatchNormReLU2d<T>>(channels, o);
        return std::make_unique<xgrad::BatchNorm2d<T>>(channels, o);
    }
    if (relu) return std::make_unique<xgrad::BatchNormReLU1d<T>>(channels, o);
    return std::make_unique<xgrad::BatchNorm1d<T>>(channels, o);
}

// x of shape (N, C, ...) seen as (N, C, S): f(flat index) over channel c's elements.
template <class F>
void forEachOfChannel(const Shape& shape, std::size_t c, F f) {
    const std::size_t s = perChannel(shape) / shape[0];
    for (std::size_t n = 0; n < shape[0]; ++n)
        for (std::size_t j = 0; j < s; ++j) f((n * shape[1] + c) * s + j);
}

// A beta per channel that keeps every gamma·x̂ + beta at least half the gap between two
// neighbouring gamma·x̂ away from 0 (the ReLU's kink), where `scaled` is BN(x) without beta:
// beta is minus the midpoint of a random gap, or lies beyond every value.
rc::Gen<Array> genBetaAwayFromKink(const Array& scaled) {
    return rc::gen::exec([scaled] {
        const Shape shape = xgrad::to_shape(scaled.shape());
        Array beta = Array::from_shape({shape[1]});
        for (std::size_t c = 0; c < shape[1]; ++c) {
            std::vector<double> v;
            forEachOfChannel(shape, c, [&](std::size_t i) { v.push_back(scaled.flat(i)); });
            std::sort(v.begin(), v.end());
            const std::size_t gap = *uniformIn<std::size_t>(0, v.size() + 1);
            if (gap == 0) beta(c) = 1.0 - v.front();  // all active
            else if (gap == v.size()) beta(c) = -1.0 - v.back();  // all zero
            else beta(c) = -(v[gap - 1] + v[gap]) / 2.0;
        }
        return beta;
    });
}

// ---- BatchNormReLU: gradients ----

// In training (batch statistics, with or without running ones) and in eval (running
// statistics). Beta is drawn so that no output sits near the ReLU's kink, where central
// differences would straddle it; so always with affine (affine=false is in the bitwise
// comparison below).
RC_GTEST_PROP(BatchNormReLUGradients, AgainstCentralDifferences, ()) {
    const bool training = *rc::gen::arbitrary<bool>();
    const bool track = !training || *rc::gen::arbitrary<bool>();
    const Shape shape = *genBatchShape(training ? 2 : 1);
    auto bn = makeBatchNorm(true, shape.size(), shape[1], {.track_running_stats = track});
    // BN(x) with gamma and without beta, for drawing beta.
    auto scale_only = makeBatchNorm(false, shape.size(), shape[1], {.track_running_stats = !training});
    if (!training) {
        const Array rm = *genArray({shape[1]}, anywhere(-2, 2));
        const Array rv = *genArray({shape[1]}, anywhere(0.25, 4));
        for (BatchNorm<double>* m : {bn.get(), scale_only.get()}) {
            m->eval();
            buffer(*m, "running_mean") = rm;
            buffer(*m, "running_var") = rv;
        }
    }
    // Values 1/4 apart: in training every channel's variance is at least 1/64, and in both modes
    // every gap between two outputs of a channel, where beta may put the kink, is wide.
    const Array x = *genDistinct(shape, 0.25);
    const Array gamma = *genArray({shape[1]}, awayFromZero(0.25, 2));
    setAffine(*scale_only, gamma, Array(xt::zeros<double>({shape[1]})));
    setAffine(*bn, gamma, *genBetaAwayFromKink((*scale_only)(Var<double>(x)).value()));
    const Inputs inputs{leaf(x), *bn->weight(), *bn->bias()};
    checkGradients([&](const Inputs& in) { return (*bn)(in[0]); }, inputs, bn->describe());
}

// ---- BatchNormReLU: equal to BatchNorm then ReLU ----

// Values, dx, dgamma, dbeta and the running statistics, bit for bit: the fused kernels compute
// the same expressions in the same order, and recompute the ReLU's mask exactly. Data on the
// grid, with affine=false among the cases, puts outputs at exactly 0 (the mask's edge).
RC_GTEST_PROP(BatchNormReLUEquality, EqualsBatchNormThenReLUBitForBit, ()) {
    const bool training = *rc::gen::arbitrary<bool>();
    const bool affine = *rc::gen::arbitrary<bool>();
    const Shape shape = *genBatchShape(2);
    const BatchNormOptions options{.momentum = *rc::gen::element(0.1, 0.5), .affine = affine};
    auto fused = makeBatchNorm(true, shape.size(), shape[1], options);
    auto plain = makeBatchNorm(false, shape.size(), shape[1], options);
    const Array rm = *genArray({shape[1]}, anywhere(-2, 2));
    const Array rv = *genArray({shape[1]}, anywhere(0.25, 4));
    const Array gamma = *genArray({shape[1]}, anywhere(-2, 2));
    const Array beta = *genArray({shape[1]}, anywhere(-1, 1));
    for (BatchNorm<double>* bn : {fused.get(), plain.get()}) {
        bn->train(training);
        buffer(*bn, "running_mean") = rm;
        buffer(*bn, "running_var") = rv;
        if (affine) setAffine(*bn, gamma, beta);
    }
    const Array x = *genArray(shape, anywhere(-2, 2));
    const Array dy = *genArray(shape, anywhere(-2, 2));
    const auto run = [&](BatchNorm<double>& bn, bool relu_after) {
        Var<double> xv = leaf(x);
        const Var<double> y = relu_after ? Var<double>(xgrad::relu(bn(xv))) : bn(xv);
        y.backward(dy);
        std::vector<Array> out{y.value(), xv.grad(), *bn.running_mean(), *bn.running_var()};
        if (affine) {
            out.push_back(bn.weight()->grad());
            out.push_back(bn.bias()->grad());
        }
        return out;
    };
    const auto a = run(*fused, false);
    const auto b = run(*plain, true);
    const char* what[] = {"y", "dx", "running_mean", "running_var", "dgamma", "dbeta"};
    for (std::size_t k = 0; k < a.size(); ++k) {
        if (a[k] != b[k]) RC_FAIL(std::string(what[k]) + " differs");
    }
}

// NaN, infinities and -0 in x: the same bits as BatchNorm then ReLU (any NaN for a NaN), in
// eval mode, where they stay in their own elements, and in training, where they spread.
TEST(BatchNormReLUEquality, NonFiniteInputsGiveWhatBatchNormThenReLUGives) {
    const double inf = std::numeric_limits<double>::infinity(), nan = std::numeric_limits<double>::quiet_NaN();
    const Array x = {{{{nan, inf}, {-inf, -0.0}}, {{1.0, -2.0}, {0.5, 3.0}}}, {{{-1.0, 2.0}, {0.0, 1.5}}, {{inf, -0.0}, {2.0, -1.0}}}};
    const Array dy = {{{{1.0, -2.0}, {3.0, -4.0}}, {{-1.0, 2.0}, {-3.0, 4.0}}}, {{{0.5, -0.5}, {1.5, -1.5}}, {{2.0, -0.0}, {-2.0, 1.0}}}};
    const auto same = [](const Array& a, const Array& b) {
        if (a.shape() != b.shape()) return false;
        for (std::size_t i = 0; i < a.size(); ++i) {
            const double u = a.data()[i], v = b.data()[i];
            if (!(std::isnan(u) && std::isnan(v)) && std::bit_cast<std::uint64_t>(u) != std::bit_cast<std::uint64_t>(v)) return false;
        }
        return true;
    };
    for (const bool training : {false, true}) {
        SCOPED_TRACE(training ? "training" : "eval");
        std::vector<Array> outs[2];
        for (const bool fused : {true, false}) {
            auto bn = makeBatchNorm<double>(fused, 4, 2);
            bn->train(training);
            Var<double> xv = leaf(x);
            const Var<double> y = fused ? (*bn)(xv) : Var<double>(xgrad::relu((*bn)(xv)));
            y.backward(dy);
            outs[fused] = {y.value(), xv.grad(), bn->weight()->grad(), bn->bias()->grad()};
        }
        const char* what[] = {"y", "dx", "dgamma", "dbeta"};
        for (std::size_t k = 0; k < 4; ++k) EXPECT_TRUE(same(outs[1][k], outs[0][k])) << what[k];
    }
}

// The kernels on large shapes, in float: each schedule of the BN kernels (fused per channel
// block or in passes, long and short runs), one and two threads; fused against the BN kernel
// and a separate ReLU, bit for bit.
template <class T>
struct ReluRun {
    std::vector<xt::xarray<T>> fused, unfused;
};

template <class T>
ReluRun<T> runReluKernels(const xt::xarray<T>& x, const xt::xarray<T>& dy, const xt::xarray<T>& gamma,
                          const xt::xarray<T>& beta, const xt::xarray<T>& rm, const xt::xarray<T>& rv) {
    const xgrad::ChannelShape sh = xgrad::channel_shape(x.shape());
    const auto tensor = [&] { return xt::xarray<T>::from_shape(x.shape()); };
    const auto channels = [&] { return xt::xarray<T>::from_shape({sh.c}); };
    ReluRun<T> r;
    for (const bool training : {true, false}) {
        xt::xarray<T> y = tensor(), dx = tensor(), dgamma = channels(), dbeta = channels();
        // The unfused BN's forward, whose ReLU gives the fused backward's upstream gradient dz.
        xt::xarray<T> z = tensor(), dz = tensor(), udx = tensor(), udgamma = channels(), udbeta = channels();
        const auto run = [&](const auto& epilogue, const T* grad, T* out, T* gx, T* gg, T* gb) {
            if (training) {
                batch_norm_train<T>(sh, x.data(), gamma.data(), beta.data(), 1e-5, epilogue, grad, out, gx, gg, gb);
            } else {
                batch_norm_eval<T>(sh, x.data(), gamma.data(), beta.data(), rm.data(), rv.data(), 1e-5, epilogue, grad,
                                   out, gx, gg, gb);
            }
        };
        run(xgrad::ReluEpilogue{}, dy.data(), y.data(), dx.data(), dgamma.data(), dbeta.data());
        r.fused.insert(r.fused.end(), {y, dx, dgamma, dbeta});
        run(xgrad::NoEpilogue{}, dy.data(), z.data(), udx.data(), udgamma.data(), udbeta.data());
        for (std::size_t i = 0; i < z.size(); ++i) dz.flat(i) = z.flat(i) > T(0) ? dy.flat(i) : T(0);
        run(xgrad::NoEpilogue{}, dz.data(), z.data(), udx.data(), udgamma.data(), udbeta.data());
        r.unfused.insert(r.unfused.end(), {xt::xarray<T>(xt::maximum(z, T(0))), udx, udgamma, udbeta});
    }
    return r;
}

TEST(BatchNormReLUKernels, EqualBatchNormThenReLUOnLargeShapesWithOneAndTwoThreads) {
    const std::vector<Shape> shapes = {{8, 3, 100, 100}, {16, 32, 28, 28}, {2, 40, 2000},
                                       {3, 1, 50000},    {70000, 3},       {301, 50, 7}};
    const char* what[] = {"y", "dx", "dgamma", "dbeta", "eval y", "eval dx", "eval dgamma", "eval dbeta"};
    std::mt19937 rng(5);
    std::normal_distribution<float> normal(0.0f, 1.0f);
    for (const Shape& shape : shapes) {
        SCOPED_TRACE(xgrad::shape_str(shape));
        xt::xarray<float> x = xt::xarray<float>::from_shape(shape), dy = x;
        xt::xarray<float> gamma = xt::xarray<float>::from_shape({shape[1]}), beta = gamma, rm = gamma, rv = gamma;
        for (auto& v : x) v = 1.0f + 2.0f * normal(rng);
        for (auto& v : dy) v = normal(rng);
        for (std::size_t c = 0; c < shape[1]; ++c) {
            gamma(c) = 1.0f + 0.5f * normal(rng);
            beta(c) = normal(rng);
            rm(c) = 1.0f + normal(rng);
            rv(c) = std::exp(normal(rng));
        }
        ReluRun<float> one, two;
        tbb::task_arena(1).execute([&] { one = runReluKernels(x, dy, gamma, beta, rm, rv); });
        tbb::task_arena(2).execute([&] { two = runReluKernels(x, dy, gamma, beta, rm, rv); });
        for (std::size_t k = 0; k < one.fused.size(); ++k) {
            EXPECT_TRUE(one.fused[k] == one.unfused[k]) << what[k] << ": fused and unfused differ";
            EXPECT_TRUE(one.fused[k] == two.fused[k]) << what[k] << ": one and two threads differ";
        }
    }
}

// ---- BatchNormReLU: the layer ----

TEST(BatchNormReLULayer, HasBatchNorm2dsStateAndIsOneNode) {
    xgrad::Sequential<float> fused, plain;
    fused.add("bn1", std::make_shared<xgrad::BatchNormReLU2d<float>>(3));
    plain.add("bn1", std::make_shared<xgrad::BatchNorm2d<float>>(3));
    plain.add("relu1", std::make_shared<xgrad::ReLU<float>>());
    const auto names = [](const xgrad::Module<float>& m) {
        std::vector<std::string> out;
        for (const auto& [name, p] : m.named_parameters()) out.push_back(name);
        for (const auto& [name, b] : m.named_buffers()) out.push_back(name);
        return out;
    };
    EXPECT_EQ(names(fused), names(plain));
    EXPECT_EQ(names(fused), (std::vector<std::string>{"bn1.weight", "bn1.bias", "bn1.running_mean", "bn1.running_var",
                                                      "bn1.num_batches_tracked"}));
    EXPECT_EQ(fused[0].describe(), "BatchNormReLU2d(3, eps=1e-05, momentum=0.1, affine=True, track_running_stats=True)");

    const Var<float> x(xt::xarray<float>::from_shape({2, 3, 2, 2}), true);
    const Var<float> y = fused(x);
    EXPECT_STREQ(y.op(), "batch_norm_relu");
    EXPECT_EQ(y.node()->inputs.size(), 3u);  // x, weight, bias: no intermediate node
    EXPECT_EQ(y.node()->inputs[0], x.node());
    EXPECT_THROW(fused(Var<float>(xt::xarray<float>::from_shape({2, 4, 2, 2}))), xgrad::ShapeError);
}

// ---- BatchNormReLUMaxPool2d: helpers ----

using xgrad::BatchNormReLUMaxPool2d;

Shape pooledShape(const Shape& s) { return {s[0], s[1], s[2] / 2, s[3] / 2}; }

// (N, C, H, W) with H and W from 2, odd ones among them. Mostly N <= 3, C <= 3 and H, W <= 7; one
// case in five has rows of 8 to 20 windows (W up to 41), past the 8 and the 16 windows that
// pool_2x2.hpp takes at once; one case in ten has 17 to 40 samples, more than the backward's sums
// have groups of consecutive samples (16, normalized_max_pool.cpp), so that groups hold two or
// three. Those have 2 to 8 channels (34 to 320 planes, which TBB splits among threads), or, for
// central differences (`gradcheck`), 1 or 2 channels of at most 4 × 4.
rc::Gen<Shape> genPoolShape(bool gradcheck) {
    return rc::gen::exec([gradcheck] {
        const int kind = *uniformIn<int>(0, 10);
        if (kind == 0) {
            RC_TAG("samples > 16");
            const std::size_t sides = gradcheck ? 5 : 8;
            return Shape{*uniformIn<std::size_t>(17, 41),
                         gradcheck ? *uniformIn<std::size_t>(1, 3) : *uniformIn<std::size_t>(2, 9),
                         *uniformIn<std::size_t>(2, sides), *uniformIn<std::size_t>(2, sides)};
        }
        if (kind <= 2) {
            RC_TAG("rows of 8 to 20 windows");
            return Shape{*uniformIn<std::size_t>(1, 3), *uniformIn<std::size_t>(1, 3), *uniformIn<std::size_t>(2, 5),
                         *uniformIn<std::size_t>(16, 42)};
        }
        RC_TAG("small");
        return Shape{*uniformIn<std::size_t>(1, 4), *uniformIn<std::size_t>(1, 4), *uniformIn<std::size_t>(2, 8),
                     *uniformIn<std::size_t>(2, 8)};
    });
}

// Values of x or dy: on the grid in [-2, 2] or, `coarse`, in {-1, -1/2, 0, 1/2, 1}; element by
// element, or from one seed past 2,000 elements (too many to shrink one by one).
rc::Gen<Array> genPoolValues(const Shape& shape, bool coarse) {
    const Domain domain = coarse ? anywhere(0, 4 * grid) : anywhere(-2, 2);
    rc::Gen<Array> values = xgrad::element_count(shape) > 2000 ? genBulkArray(shape, domain) : genArray(shape, domain);
    if (!coarse) return values;
    return rc::gen::map(values, [](const Array& a) { return mapValues(a, [](double v) { return (v / grid - 2) / 2; }); });
}

// A BatchNorm's parameters and running statistics, C values each; each set where the layer has it.
template <class T>
struct BnState {
    xt::xarray<T> gamma, beta, running_mean, running_var;
};

template <class T>
void setState(BatchNorm<T>& bn, const BnState<T>& s) {
    if (bn.weight()) setAffine(bn, s.gamma, s.beta);
    if (bn.running_mean()) {
        buffer(bn, "running_mean") = s.running_mean;
        buffer(bn, "running_var") = s.running_var;
    }
}

// mean + sd·N(0, 1) values of `shape`.
template <class T>
xt::xarray<T> normalArray(const Shape& shape, std::mt19937& rng, double mean = 0.0, double sd = 1.0) {
    std::normal_distribution<double> normal(mean, sd);
    xt::xarray<T> a = xt::xarray<T>::from_shape(shape);
    for (auto& v : a) v = static_cast<T>(normal(rng));
    return a;
}

// gamma ~ 1 ± 0.5, beta ~ ± 1, running mean ~ 1 ± 1, running variance e^N(0, 1).
template <class T>
BnState<T> randomState(std::size_t c, std::mt19937& rng) {
    BnState<T> s{normalArray<T>({c}, rng, 1.0, 0.5), normalArray<T>({c}, rng), normalArray<T>({c}, rng, 1.0),
                 normalArray<T>({c}, rng)};
    for (auto& v : s.running_var) v = std::exp(v);
    return s;
}

// What a forward and backward give: a gradient is absent where its input wants none, the running
// statistics where the layer keeps none.
template <class T>
struct PoolRun {
    using Result = std::optional<xt::xarray<T>>;
    Result y, dx, dweight, dbias, running_mean, running_var;
    std::int64_t batches = 0;
};

// The inputs that do not require gradients.
struct Frozen {
    bool x = false;
    bool parameters = false;
};

// bn(x), followed by MaxPool2d(2) if `then_pool`, and its backward for the output gradient dy.
template <class T>
PoolRun<T> runPool(BatchNorm<T>& bn, bool then_pool, const xt::xarray<T>& x, const xt::xarray<T>& dy, Frozen frozen = {}) {
    for (Var<T> p : bn.parameters()) p.set_requires_grad(!frozen.parameters);
    const Var<T> xv(x, !frozen.x);
    xgrad::MaxPool2d<T> pool(2);
    const Var<T> y = then_pool ? pool(bn(xv)) : bn(xv);
    y.backward(dy);
    using Result = typename PoolRun<T>::Result;
    const auto grad = [](const Var<T>& v) { return v.has_grad() ? Result(v.grad()) : Result(); };
    PoolRun<T> r;
    r.y = y.value();
    r.dx = grad(xv);
    if (bn.weight()) {
        r.dweight = grad(*bn.weight());
        r.dbias = grad(*bn.bias());
    }
    if (bn.running_mean()) {
        r.running_mean = *bn.running_mean();
        r.running_var = *bn.running_var();
        r.batches = *bn.num_batches_tracked();
    }
    return r;
}

// BatchNormReLUMaxPool2d and BatchNormReLU2d then MaxPool2d(2), both with `options` and `state`,
// in training or in eval, for input x and output gradient dy.
template <class T>
std::pair<PoolRun<T>, PoolRun<T>> runFusedAndUnfused(const BatchNormOptions& options, const BnState<T>& state,
                                                     bool training, const xt::xarray<T>& x, const xt::xarray<T>& dy,
                                                     Frozen frozen = {}) {
    BatchNormReLUMaxPool2d<T> fused(x.shape(1), options);
    xgrad::BatchNormReLU2d<T> unfused(x.shape(1), options);
    const auto run = [&](BatchNorm<T>& bn, bool then_pool) {
        setState(bn, state);
        bn.train(training);
        return runPool(bn, then_pool, x, dy, frozen);
    };
    PoolRun<T> a = run(fused, false);
    return {std::move(a), run(unfused, true)};
}

template <class T>
bool sameBits(T a, T b) {
    using Bits = std::conditional_t<sizeof(T) == 4, std::uint32_t, std::uint64_t>;
    return std::bit_cast<Bits>(a) == std::bit_cast<Bits>(b);
}

// The largest |actual - expected| / max(1, |expected|) over the elements (of equal shapes).
template <class T>
double worstError(const xt::xarray<T>& actual, const xt::xarray<T>& expected) {
    double worst = 0.0;
    for (std::size_t i = 0; i < actual.size(); ++i) {
        const double a = actual.data()[i], e = expected.data()[i];
        worst = std::max(worst, std::abs(a - e) / std::max(1.0, std::abs(e)));
    }
    return worst;
}

// How `actual` differs from `expected`: in any bit (tolerance 0), or else by more than
// tolerance·max(1, |expected|) in an element; "" where they agree (both absent among them).
template <class T>
std::string mismatch(const char* what, const std::optional<xt::xarray<T>>& actual,
                     const std::optional<xt::xarray<T>>& expected, double tolerance) {
    const std::string name(what);
    if (!actual || !expected) {
        if (actual.has_value() == expected.has_value()) return "";
        return name + (actual ? " present" : " absent") + ", expected otherwise";
    }
    if (actual->shape() != expected->shape()) {
        return name + ": shape " + xgrad::shape_str(actual->shape()) + ", expected " + xgrad::shape_str(expected->shape());
    }
    for (std::size_t i = 0; i < actual->size(); ++i) {
        const T a = actual->data()[i], e = expected->data()[i];
        const double bound = tolerance * std::max(1.0, std::abs(static_cast<double>(e)));
        if (tolerance == 0.0 ? !sameBits(a, e) : !(std::abs(static_cast<double>(a) - static_cast<double>(e)) <= bound)) {
            std::ostringstream msg;
            msg.precision(17);
            msg << name << ": element " << i << " is " << a << ", expected " << e;
            return msg.str();
        }
    }
    return "";
}

// The first difference of `actual` from `expected`: y, the running statistics and the counter
// bit for bit, the gradients within `tolerance` (0: bit for bit too); "" if none.
template <class T>
std::string compareRuns(const PoolRun<T>& actual, const PoolRun<T>& expected, double tolerance) {
    using Field = typename PoolRun<T>::Result PoolRun<T>::*;
    const std::pair<const char*, Field> exact[] = {
        {"y", &PoolRun<T>::y}, {"running_mean", &PoolRun<T>::running_mean}, {"running_var", &PoolRun<T>::running_var}};
    const std::pair<const char*, Field> gradients[] = {
        {"dx", &PoolRun<T>::dx}, {"dweight", &PoolRun<T>::dweight}, {"dbias", &PoolRun<T>::dbias}};
    for (const auto& [what, field] : exact) {
        if (std::string m = mismatch(what, actual.*field, expected.*field, 0.0); !m.empty()) return m;
    }
    for (const auto& [what, field] : gradients) {
        if (std::string m = mismatch(what, actual.*field, expected.*field, tolerance); !m.empty()) return m;
    }
    if (actual.batches != expected.batches) {
        return "num_batches_tracked " + std::to_string(actual.batches) + ", expected " + std::to_string(expected.batches);
    }
    return "";
}

// The unfused gradients' rounding in double: the fused backward's per-channel sums are added in
// another order than BatchNormReLU2d's (by groups of consecutive samples, each plane in 8 lanes),
// so they, and the gradients, may differ in their last bits (measured: 8e-15 at most).
constexpr double kUnfusedGradientTolerance = 1e-12;

// ---- BatchNormReLUMaxPool2d: gradients ----

// In training (through the batch statistics) and in eval (running statistics), to x, weight and
// bias. As for BatchNormReLU above, x's values are distinct and 1/4 apart and beta keeps every
// normalized value away from the ReLU's kink: a channel's normalization is monotone, so no two
// values of a window are near a tie where the maximum is positive, and a window of negative
// values gives 0 whichever is its arg-max.
RC_GTEST_PROP(BatchNormReLUMaxPoolGradients, AgainstCentralDifferences, ()) {
    const bool training = *rc::gen::arbitrary<bool>();
    const Shape shape = *genPoolShape(true);
    const std::size_t c = shape[1];
    const Array x = *genDistinct(shape, 0.25);
    BnState<double> state{*genArray({c}, awayFromZero(0.25, 2)), Array(xt::zeros<double>({c})),
                          *genArray({c}, anywhere(-2, 2)), *genArray({c}, anywhere(0.25, 4))};
    // BN(x) with gamma and without beta, for drawing beta.
    xgrad::BatchNorm2d<double> scale_only(c);
    setState<double>(scale_only, state);
    scale_only.train(training);
    state.beta = *genBetaAwayFromKink(scale_only(Var<double>(x)).value());
    BatchNormReLUMaxPool2d<double> layer(c);
    setState<double>(layer, state);
    layer.train(training);
    const Inputs inputs{leaf(x), *layer.weight(), *layer.bias()};
    checkGradients([&](const Inputs& in) { return layer(in[0]); }, inputs, layer.describe());
}

// ---- BatchNormReLUMaxPool2d: equal to BatchNormReLU2d then MaxPool2d(2) ----

// In training and in eval (with running statistics, or without: the batch's), affine or not, the
// running statistics moved by a momentum or averaged; x on the grid or, one case in three, on five
// values (equal values in a window: the first of equal maxima; normalized values at 0); x or the
// parameters frozen in one case in four. y and the running statistics bit for bit: the fused
// forward computes the same coefficients and the same expression per element.
RC_GTEST_PROP(BatchNormReLUMaxPoolEquality, EqualsBatchNormReLUThenMaxPool2d, ()) {
    const bool training = *rc::gen::arbitrary<bool>();
    const Shape shape = *genPoolShape(false);
    const std::size_t c = shape[1];
    const BatchNormOptions options{
        .momentum = *rc::gen::element(std::optional<double>(0.1), std::optional<double>(0.5), std::optional<double>()),
        .affine = *rc::gen::arbitrary<bool>(),
        .track_running_stats = *rc::gen::arbitrary<bool>()};
    const BnState<double> state{*genArray({c}, anywhere(-2, 2)), *genArray({c}, anywhere(-1, 1)),
                                *genArray({c}, anywhere(-2, 2)), *genArray({c}, anywhere(0.25, 4))};
    const bool coarse = *uniformIn<int>(0, 3) == 0;
    const Array x = *genPoolValues(shape, coarse);
    const Array dy = *genPoolValues(pooledShape(shape), false);
    Frozen frozen;
    if (options.affine && *uniformIn<int>(0, 4) == 0) (*rc::gen::arbitrary<bool>() ? frozen.x : frozen.parameters) = true;
    const auto runs = runFusedAndUnfused(options, state, training, x, dy, frozen);
    if (std::string m = compareRuns(runs.first, runs.second, kUnfusedGradientTolerance); !m.empty()) RC_FAIL(m);
}

// The seed CNN's first block at batch 64, in float, in training and in eval: y and the running
// statistics bit for bit; the gradients within 1e-5 relative, for coefficients that sums in
// another order may round to a neighbouring float (worst relative errors recorded; measured: none,
// the float rounding of this shape's coefficients hides the order of the sums in double).
TEST(BatchNormReLUMaxPoolEquality, EqualsBatchNormReLUThenMaxPool2dOnALargeShapeInFloat) {
    const Shape shape{64, 32, 28, 28};
    std::mt19937 rng(11);
    const xt::xarray<float> x = normalArray<float>(shape, rng, 1.0, 2.0);
    const xt::xarray<float> dy = normalArray<float>(pooledShape(shape), rng);
    const BnState<float> state = randomState<float>(shape[1], rng);
    for (const bool training : {true, false}) {
        SCOPED_TRACE(training ? "training" : "eval");
        const auto runs = runFusedAndUnfused<float>({}, state, training, x, dy);
        EXPECT_EQ(compareRuns(runs.first, runs.second, 1e-5), "");
        const std::string mode = training ? "training_" : "eval_";
        const auto record = [&](const char* what, const xt::xarray<float>& a, const xt::xarray<float>& b) {
            std::ostringstream s;
            s << std::setprecision(3) << worstError(a, b);
            RecordProperty(mode + what + "_max_rel_err", s.str());
        };
        record("dx", *runs.first.dx, *runs.second.dx);
        record("dweight", *runs.first.dweight, *runs.second.dweight);
        record("dbias", *runs.first.dbias, *runs.second.dbias);
    }
}

// With x frozen the layer computes dweight and dbias alone, with weight and bias frozen dx alone
// (and, in eval, no backward sums at all): as the unfused composition does.
TEST(BatchNormReLUMaxPoolEquality, FrozenInputOrParametersGiveTheOtherGradientsAsUnfused) {
    std::mt19937 rng(17);
    for (const Shape& shape : {Shape{3, 2, 5, 4}, Shape{20, 3, 7, 6}}) {
        const Array x = normalArray<double>(shape, rng, 1.0, 2.0);
        const Array dy = normalArray<double>(pooledShape(shape), rng);
        const BnState<double> state = randomState<double>(shape[1], rng);
        for (const bool training : {true, false}) {
            for (const Frozen frozen : {Frozen{.x = true}, Frozen{.parameters = true}}) {
                SCOPED_TRACE(xgrad::shape_str(shape) + (training ? " training" : " eval") +
                             (frozen.x ? ", x frozen" : ", parameters frozen"));
                const auto runs = runFusedAndUnfused<double>({}, state, training, x, dy, frozen);
                EXPECT_EQ(compareRuns(runs.first, runs.second, kUnfusedGradientTolerance), "");
                EXPECT_EQ(runs.first.dx.has_value(), !frozen.x);
                EXPECT_EQ(runs.first.dweight.has_value(), !frozen.parameters);
                EXPECT_EQ(runs.first.dbias.has_value(), !frozen.parameters);
            }
        }
    }
}

// ---- BatchNormReLUMaxPool2d: thread counts ----

// The backward's sums are added in groups of samples that the batch alone fixes (here 40 samples
// in 16 groups of 2 or 3), every other pass is per plane: y, dx, dweight, dbias and the running
// statistics have the same bits on 1 and 2 threads, in training and in eval. Groups that followed
// the thread count would fail in double; in float, the rounding of the coefficients and of
// dweight to float mostly hides the order of the sums in double. The shape (69,120 elements, 4
// channels) takes the forward's two walks: channel blocks in the calling thread on 1 thread, the
// statistics and then the planes each in parallel on 2 (too few channels to share as blocks);
// both also against the unfused layers.
template <class T>
void checkThreadCountIndependence() {
    const Shape shape{40, 4, 24, 18};
    std::mt19937 rng(13);
    const xt::xarray<T> x = normalArray<T>(shape, rng, 1.0, 2.0);
    const xt::xarray<T> dy = normalArray<T>(pooledShape(shape), rng);
    const BnState<T> state = randomState<T>(shape[1], rng);
    for (const bool training : {true, false}) {
        SCOPED_TRACE(training ? "training" : "eval");
        PoolRun<T> runs[2];
        for (int threads = 1; threads <= 2; ++threads) {
            BatchNormReLUMaxPool2d<T> layer(shape[1]);
            setState<T>(layer, state);
            layer.train(training);
            tbb::task_arena(threads).execute([&] {
                runs[threads - 1] = runPool<T>(layer, false, x, dy);
                const auto unfused = runFusedAndUnfused<T>({}, state, training, x, dy).second;
                EXPECT_EQ(compareRuns(runs[threads - 1], unfused, std::is_same_v<T, float> ? 1e-5 : kUnfusedGradientTolerance), "")
                    << threads << " threads against the unfused layers";
            });
        }
        EXPECT_EQ(compareRuns(runs[1], runs[0], 0.0), "") << "two threads against one";
    }
}

TEST(BatchNormReLUMaxPoolThreads, OneAndTwoThreadsGiveTheSameBitsInDouble) { checkThreadCountIndependence<double>(); }
TEST(BatchNormReLUMaxPoolThreads, OneAndTwoThreadsGiveTheSameBitsInFloat) { checkThreadCountIndependence<float>(); }

// In eval, an infinite or NaN x at no window's arg-max (a loser of its window, or in an odd last
// row left out of the windows) makes dweight NaN, as in the unfused layers and torch, whose sums
// over every element add 0 times it; at an arg-max, the fused sums see it themselves.
TEST(BatchNormReLUMaxPoolEquality, NonFiniteInputsGiveTheUnfusedWeightGradientInEval) {
    const Shape shape{2, 2, 5, 4};
    std::mt19937 rng(23);
    const Array dy = normalArray<double>(pooledShape(shape), rng);
    const BnState<double> state = randomState<double>(shape[1], rng);
    const double inf = std::numeric_limits<double>::infinity(), nan = std::numeric_limits<double>::quiet_NaN();
    // (value, flat index): a window's loser, the unpooled last row, a window's winner.
    for (const auto& [value, at] : std::vector<std::pair<double, std::size_t>>{{-inf, 0}, {nan, 17}, {inf, 25}, {-inf, 38}}) {
        Array x = normalArray<double>(shape, rng, 1.0, 2.0);
        x.data()[at] = value;
        SCOPED_TRACE(std::to_string(value) + " at " + std::to_string(at));
        const auto [fused, unfused] = runFusedAndUnfused<double>({}, state, false, x, dy);
        EXPECT_EQ(mismatch("y", fused.y, unfused.y, 0.0), "");
        EXPECT_EQ(mismatch("dx", fused.dx, unfused.dx, 0.0), "");  // α·g alone in eval
        // The channel's dweight not finite in both (NaN, or an infinity of the same sign), the other's close.
        const std::size_t channel = at / (shape[2] * shape[3]) % shape[1];
        for (std::size_t c = 0; c < shape[1]; ++c) {
            const double a = (*fused.dweight)(c), e = (*unfused.dweight)(c);
            if (c == channel) {
                EXPECT_FALSE(std::isfinite(e)) << "the unfused dweight of channel " << c;
                EXPECT_TRUE(std::isnan(a) == std::isnan(e) && (std::isnan(a) || a == e)) << a << " against " << e;
            } else {
                EXPECT_NEAR(a, e, kUnfusedGradientTolerance * std::max(1.0, std::abs(e)));
            }
        }
        EXPECT_EQ(mismatch("dbias", fused.dbias, unfused.dbias, kUnfusedGradientTolerance), "");
    }
}

// ---- BatchNormReLUMaxPool2d: the layer ----

template <class T>
std::vector<std::string> stateNames(const xgrad::Module<T>& m) {
    std::vector<std::string> names;
    for (const auto& [name, p] : m.named_parameters()) names.push_back(name);
    for (const auto& [name, b] : m.named_buffers()) names.push_back(name);
    return names;
}

// Copies each parameter and buffer of `from` into the one of the same name of `to`, as a
// state_dict loads: the same names in the same order, each of the same shape, or a failure.
template <class T>
void loadState(const xgrad::Module<T>& from, xgrad::Module<T>& to) {
    ASSERT_EQ(stateNames(from), stateNames(to));
    const auto params = from.named_parameters(), to_params = to.named_parameters();
    for (std::size_t i = 0; i < params.size(); ++i) {
        ASSERT_EQ(params[i].second.shape(), to_params[i].second.shape()) << params[i].first;
        Var<T>(to_params[i].second).mutable_value() = params[i].second.value();
    }
    const auto buffers = from.named_buffers(), to_buffers = to.named_buffers();
    for (std::size_t i = 0; i < buffers.size(); ++i) {
        const xgrad::BufferRef<T>& b = buffers[i].second;
        const xgrad::BufferRef<T>& t = to_buffers[i].second;
        ASSERT_EQ(b.tensor == nullptr, t.tensor == nullptr) << buffers[i].first;
        if (b.tensor) {
            ASSERT_EQ(xgrad::to_shape(b.tensor->shape()), xgrad::to_shape(t.tensor->shape())) << buffers[i].first;
            *t.tensor = *b.tensor;
        } else {
            *t.counter = *b.counter;
        }
    }
}

// Its state is BatchNorm2d's under the same names: a state_dict moves into a BatchNorm2d and back,
// and in eval each then computes what the other does (BatchNorm2d followed by ReLU and
// MaxPool2d(2)). One node, whose inputs are x, weight and bias.
TEST(BatchNormReLUMaxPoolLayer, HasBatchNorm2dsStateAndIsOneNode) {
    xgrad::Sequential<float> fused, plain, back;
    const auto layer = fused.add("bn1", std::make_shared<BatchNormReLUMaxPool2d<float>>(3));
    plain.add("bn1", std::make_shared<xgrad::BatchNorm2d<float>>(3));
    const auto layer_back = back.add("bn1", std::make_shared<BatchNormReLUMaxPool2d<float>>(3));
    EXPECT_EQ(stateNames(fused), stateNames(plain));
    EXPECT_EQ(stateNames(fused), (std::vector<std::string>{"bn1.weight", "bn1.bias", "bn1.running_mean",
                                                           "bn1.running_var", "bn1.num_batches_tracked"}));
    EXPECT_EQ(layer->describe(), "BatchNormReLUMaxPool2d(3, eps=1e-05, momentum=0.1, affine=True, track_running_stats=True)");

    const Shape shape{4, 3, 6, 5};
    std::mt19937 rng(19);
    const auto batch = [&] { return Var<float>(normalArray<float>(shape, rng, 1.0, 2.0)); };
    xgrad::ReLU<float> relu;
    xgrad::MaxPool2d<float> pool(2);
    const auto unfused = [&](const Var<float>& x) { return pool(relu(plain(x))).value(); };
    // Two training steps move the fused layer's running statistics and its counter.
    setState(*layer, randomState<float>(3, rng));
    fused(batch());
    fused(batch());
    loadState<float>(fused, plain);
    fused.eval();
    plain.eval();
    const Var<float> x = batch();
    EXPECT_EQ(fused(x).value(), unfused(x));
    // And back, after a training step of the BatchNorm2d.
    plain.train();
    plain(batch());
    loadState<float>(plain, back);
    EXPECT_EQ(*layer_back->num_batches_tracked(), 3);
    back.eval();
    plain.eval();
    EXPECT_EQ(back(x).value(), unfused(x));

    const Var<float> xg(xt::xarray<float>(xt::ones<float>(shape)), true);
    const Var<float> y = fused(xg);
    EXPECT_STREQ(y.op(), "batch_norm_relu_max_pool2d");
    EXPECT_EQ(y.shape(), Shape({4, 3, 3, 2}));
    EXPECT_EQ(y.node()->inputs.size(), 3u);  // x, weight, bias: no intermediate node
    EXPECT_EQ(y.node()->inputs[0], xg.node());
}

// An input too small for a 2×2 window is refused naming the layer and the shape, in training and in
// eval, before the running statistics move; a wrong channel count and a rank other than 4 give
// BatchNorm's errors; the op alone names itself.
TEST(BatchNormReLUMaxPoolLayer, ShapeErrorsNameTheLayerAndTheShape) {
    xgrad::Sequential<float> net;
    const auto layer = net.add("block1", std::make_shared<BatchNormReLUMaxPool2d<float>>(3));
    const std::string name =
        "block1 (BatchNormReLUMaxPool2d(3, eps=1e-05, momentum=0.1, affine=True, track_running_stats=True))";
    const auto ones = [](const Shape& s) { return Var<float>(xt::xarray<float>(xt::ones<float>(s))); };
    for (const bool training : {true, false}) {
        SCOPED_TRACE(training ? "training" : "eval");
        net.train(training);
        for (const Shape& s : {Shape{2, 3, 1, 5}, Shape{2, 3, 5, 1}, Shape{2, 3, 1, 1}}) {
            const std::string m = error_of<xgrad::ShapeError>([&] { net(ones(s)); });
            EXPECT_EQ(m.rfind(name + ": ", 0), 0u) << m;
            EXPECT_NE(m.find(xgrad::shape_str(s)), std::string::npos) << m;
        }
        EXPECT_EQ(error_of<xgrad::ShapeError>([&] { net(ones({2, 4, 4, 4})); }),
                  name + ": expected C=3 channels, got input (2, 4, 4, 4)");
        EXPECT_EQ(error_of<xgrad::ShapeError>([&] { net(ones({2, 3, 4})); }),
                  name + ": expected input (N, C, H, W), got (2, 3, 4)");
    }
    EXPECT_EQ(*layer->num_batches_tracked(), 0);
    EXPECT_EQ(*layer->running_mean(), xt::xarray<float>(xt::zeros<float>({3})));
    EXPECT_EQ(*layer->running_var(), xt::xarray<float>(xt::ones<float>({3})));
    const std::string m = error_of<xgrad::ShapeError>(
        [&] { xgrad::batch_norm_relu_max_pool2d(ones({2, 3, 4, 1}), xgrad::BatchNormArgs<float>{}); });
    EXPECT_EQ(m.rfind("batch_norm_relu_max_pool2d: ", 0), 0u) << m;
    EXPECT_NE(m.find("(2, 3, 4, 1)"), std::string::npos) << m;
}

// ---- fold_batch_norm ----

// A BatchNorm2d in eval with the given state.
template <class T>
std::shared_ptr<xgrad::BatchNorm2d<T>> evalBatchNorm(const xt::xarray<T>& gamma, const xt::xarray<T>& beta,
                                                     const xt::xarray<T>& rm, const xt::xarray<T>& rv, double eps,
                                                     bool affine = true) {
    auto bn = std::make_shared<xgrad::BatchNorm2d<T>>(rm.size(), BatchNormOptions{.eps = eps, .affine = affine});
    if (affine) setAffine<T>(*bn, gamma, beta);
    buffer<T>(*bn, "running_mean") = rm;
    buffer<T>(*bn, "running_var") = rv;
    bn->eval();
    return bn;
}

RC_GTEST_PROP(FoldBatchNorm, EqualsConvThenBatchNormInEvalInDouble, ()) {
    const std::size_t in = *uniformIn<std::size_t>(1, 4), out = *uniformIn<std::size_t>(1, 5);
    const std::size_t k = *uniformIn<std::size_t>(1, 4), stride = *uniformIn<std::size_t>(1, 3);
    const std::size_t pad = *uniformIn<std::size_t>(0, 2);
    const bool bias = *rc::gen::arbitrary<bool>(), affine = *rc::gen::arbitrary<bool>();
    xgrad::Rng rng(*rc::gen::arbitrary<std::uint64_t>());
    Conv2d<double> conv(in, out, k, stride, pad, bias, rng);
    const auto bn = evalBatchNorm<double>(*genArray({out}, anywhere(-2, 2)), *genArray({out}, anywhere(-2, 2)),
                                          *genArray({out}, anywhere(-2, 2)), *genArray({out}, anywhere(0.01, 4)),
                                          *rc::gen::element(1e-5, 1e-3), affine);
    const auto folded = xgrad::fold_batch_norm(conv, *bn);
    const Shape shape{*uniformIn<std::size_t>(1, 3), in, *uniformIn<std::size_t>(k, k + 4), *uniformIn<std::size_t>(k, k + 4)};
    const Var<double> x(*genArray(shape, anywhere(-2, 2)));
    checkClose((*folded)(x).value(), (*bn)(conv(x)).value(), 1e-12, "folded conv");
    RC_ASSERT(folded->bias() != nullptr);
    RC_ASSERT(folded->stride() == conv.stride());
    RC_ASSERT(folded->padding() == conv.padding());
}

// The seed CNN's conv2 (32 -> 64, 3x3, padding 1, torch's init) on post-ReLU-and-pool-like
// inputs (|N(0, 1)|), with trained-like running statistics: the conv output's own per-channel
// mean and variance, off by a few percent, gamma ~ 1 ± 0.2, beta ~ ± 0.1. In float, folded and
// unfolded outputs are each compared with the unfolded computation in double. Measured (batch 8):
// max abs error 4.4e-6 folded and 5.1e-6 unfolded against double, 7.2e-6 between the two, for
// max |y| = 5.9; max |error| / max(1, |y|) 3.9e-6 folded. Folding costs no accuracy: both are
// the float gemm's rounding. The bounds leave about 4x room.
TEST(FoldBatchNorm, SeedCnnConv2InFloat) {
    xgrad::Rng rng(3);
    Conv2d<float> conv(32, 64, 3, 1, 1, true, rng);
    Conv2d<double> conv64(32, 64, 3, 1, 1, true, rng);
    conv64.weight().mutable_value() = xt::cast<double>(conv.weight().value());
    conv64.bias()->mutable_value() = xt::cast<double>(conv.bias()->value());
    xt::xarray<float> x = xt::xarray<float>::from_shape({8, 32, 14, 14});
    for (auto& v : x) v = static_cast<float>(std::abs(rng.normal()));
    const Array x64 = xt::cast<double>(x);
    const Array raw = conv64(Var<double>(x64)).value();
    xt::xarray<float> gamma = xt::xarray<float>::from_shape({64}), beta = gamma, rm = gamma, rv = gamma;
    const Shape raw_shape = xgrad::to_shape(raw.shape());
    for (std::size_t c = 0; c < 64; ++c) {
        double sum = 0.0, sq = 0.0, count = 0.0;
        forEachOfChannel(raw_shape, c, [&](std::size_t i) { sum += raw.flat(i); sq += raw.flat(i) * raw.flat(i); ++count; });
        const double mean = sum / count;
        rm(c) = static_cast<float>(mean * (1.0 + 0.05 * rng.normal()));
        rv(c) = static_cast<float>((sq / count - mean * mean) * (1.0 + 0.05 * rng.normal()));
        gamma(c) = static_cast<float>(1.0 + 0.2 * rng.normal());
        beta(c) = static_cast<float>(0.1 * rng.normal());
    }
    const auto bn = evalBatchNorm<float>(gamma, beta, rm, rv, 1e-5);
    const auto bn64 = evalBatchNorm<double>(xt::cast<double>(gamma), xt::cast<double>(beta), xt::cast<double>(rm),
                                            xt::cast<double>(rv), 1e-5);
    const auto folded = xgrad::fold_batch_norm(conv, *bn);
    const Array exact = (*bn64)(Var<double>(raw)).value();
    const Array unfolded = xt::cast<double>((*bn)(conv(Var<float>(x))).value());
    const Array fast = xt::cast<double>((*folded)(Var<float>(x)).value());
    const double scale = xt::amax(xt::abs(exact))();
    const double folded_err = xt::amax(xt::abs(fast - exact))();
    const double unfolded_err = xt::amax(xt::abs(unfolded - exact))();
    const double between = xt::amax(xt::abs(fast - unfolded))();
    const auto record = [](const char* key, double v) {
        std::ostringstream s;
        s << std::setprecision(3) << v;
        RecordProperty(key, s.str());
    };
    record("max_abs_y", scale);
    record("folded_max_abs_err", folded_err);
    record("unfolded_max_abs_err", unfolded_err);
    record("folded_vs_unfolded", between);
    record("max_rel_err", xt::amax(xt::abs(fast - exact) / xt::maximum(xt::abs(exact), 1.0))());
    EXPECT_LE(folded_err, 2e-5);
    EXPECT_LE(unfolded_err, 2e-5);
    EXPECT_LE(between, 3e-5);
}

TEST(FoldBatchNorm, ErrorsNameBothLayersAndTheChannelCounts) {
    xgrad::Sequential<float> model;
    auto conv = model.add("conv2", std::make_shared<Conv2d<float>>(32, 64, 3, 1, 1));
    auto bn = model.add("bn2", std::make_shared<xgrad::BatchNorm2d<float>>(32));
    try {
        xgrad::fold_batch_norm(*conv, *bn);
        FAIL() << "no ShapeError";
    } catch (const xgrad::ShapeError& e) {
        EXPECT_EQ(std::string(e.what()),
                  "fold_batch_norm: bn2 (BatchNorm2d(32, eps=1e-05, momentum=0.1, affine=True, track_running_stats=True)) "
                  "normalizes 32 channels, expected 64, the out_channels of "
                  "conv2 (Conv2d(32, 64, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1)))");
    }
    xgrad::BatchNorm2d<float> untracked(64, {.track_running_stats = false});
    try {
        xgrad::fold_batch_norm(*conv, untracked);
        FAIL() << "no std::invalid_argument";
    } catch (const std::invalid_argument& e) {
        EXPECT_NE(std::string(e.what()).find("keeps no running statistics"), std::string::npos) << e.what();
    }
}

}  // namespace
