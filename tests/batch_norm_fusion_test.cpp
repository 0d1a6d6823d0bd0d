// The BatchNorm fusions: BatchNormReLU1d/2d (BN then ReLU in one node) against central
// differences and, bit for bit, against BatchNorm1d/2d followed by ReLU (values, gradients,
// running statistics; in training and in eval), its kernels on large shapes in float, and its
// state; fold_batch_norm against Conv2d then BatchNorm2d in eval, in double and in float, and
// its errors.
#include <gtest/gtest.h>
#include <rapidcheck/gtest.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <iomanip>
#include <limits>
#include <memory>
#include <random>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include <tbb/task_arena.h>

#include "autodiff/elementwise_ops.hpp"
#include "layers/activations.hpp"
#include "layers/normalization/batch_norm.hpp"
#include "tests/batch_norm_kernels.hpp"
#include "layers/fold_batch_norm.hpp"
#include "layers/sequential.hpp"
#include "tests/batch_norm_state.hpp"
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
                                       {3, 1, 50000},    {70000, 3},       {300, 50, 7}};
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
