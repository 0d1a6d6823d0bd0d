// BatchNorm1d/2d, in double unless said otherwise: gradients against central differences
// (batch statistics in training and in eval without running statistics, running statistics in
// eval; with and without affine; (N, C), (N, C, L) and (N, C, H, W)); the properties of the
// transform (per-channel output mean 0 and variance 1, invariance to a per-channel a·x + b,
// Σ dx = 0 and Σ dx·x̂ = 0 per channel, each up to what eps accounts for; equality with BN
// composed of primitive ops); precision in float for data with a large mean; the kernels on
// large shapes against a naive reference, bitwise equal with one and two threads; torch's
// running statistics (momentum, cumulative average, convergence), num_batches_tracked, state
// names, and the errors for bad shapes and for a batch of one.
#include <gtest/gtest.h>
#include <rapidcheck/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include <tbb/task_arena.h>
#include <xtensor/xadapt.hpp>
#include <xtensor/xbuilder.hpp>

#include "layers/normalization/batch_norm.hpp"
#include "layers/normalization/blocked.hpp"
#include "layers/normalization/channel_reduce.hpp"
#include "layers/normalization/streaming_store.hpp"
#include "tests/batch_norm_kernels.hpp"
#include "tests/batch_norm_state.hpp"
#include "tests/error_message.hpp"
#include "tests/generators.hpp"
#include "tests/streamed_walk.hpp"

namespace {

using namespace xgrad_test;
using Inputs = std::vector<Var<double>>;
using xgrad::BatchNorm;
using xgrad::BatchNorm1d;
using xgrad::BatchNorm2d;
using xgrad::BatchNormOptions;

constexpr double eps = 1e-5;

// ---- naive references, by explicit index arithmetic ----

// x of shape (N, C, ...) seen as (N, C, S).
struct Layout {
    std::size_t n, c, s;
    explicit Layout(const Shape& shape) : n(shape[0]), c(shape[1]), s(xgrad::element_count(shape) / (shape[0] * shape[1])) {}
    std::size_t count() const { return n * s; }
    template <class F>
    void forEach(std::size_t ch, F f) const {  // f(flat index) over channel ch's elements
        for (std::size_t i = 0; i < n; ++i)
            for (std::size_t j = 0; j < s; ++j) f((i * c + ch) * s + j);
    }
};

// Per channel: mean, biased and unbiased variance, in long double.
struct Moments {
    std::vector<double> mean, var, unbiased;
};

template <class A>
Moments moments(const A& x) {
    const Layout l(xgrad::to_shape(x.shape()));
    Moments m;
    for (std::size_t c = 0; c < l.c; ++c) {
        long double sum = 0, sq = 0;
        l.forEach(c, [&](std::size_t i) { sum += x.data()[i]; });
        const long double mean = sum / l.count();
        l.forEach(c, [&](std::size_t i) { sq += (x.data()[i] - mean) * (x.data()[i] - mean); });
        m.mean.push_back(static_cast<double>(mean));
        m.var.push_back(static_cast<double>(sq / l.count()));
        m.unbiased.push_back(static_cast<double>(sq / (l.count() - 1)));
    }
    return m;
}

// BN forward and (training) backward with batch statistics, in long double.
struct Reference {
    Array y, dx, dgamma, dbeta;
};

template <class A>
Reference reference(const A& x, const A& gamma, const A& beta, const A& dy) {
    const Layout l(xgrad::to_shape(x.shape()));
    const Moments m = moments(x);
    Reference r{Array::from_shape(xgrad::to_shape(x.shape())), Array::from_shape(xgrad::to_shape(x.shape())),
                Array::from_shape({l.c}), Array::from_shape({l.c})};
    for (std::size_t c = 0; c < l.c; ++c) {
        const long double invstd = 1.0L / std::sqrt(static_cast<long double>(m.var[c]) + eps);
        const auto xhat = [&](std::size_t i) { return (x.data()[i] - static_cast<long double>(m.mean[c])) * invstd; };
        long double sum_dy = 0, sum_dy_xhat = 0;
        l.forEach(c, [&](std::size_t i) {
            sum_dy += dy.data()[i];
            sum_dy_xhat += dy.data()[i] * xhat(i);
        });
        const long double n = static_cast<long double>(l.count());
        l.forEach(c, [&](std::size_t i) {
            r.y.data()[i] = static_cast<double>(gamma(c) * xhat(i) + beta(c));
            r.dx.data()[i] =
                static_cast<double>(gamma(c) * invstd * (dy.data()[i] - sum_dy / n - xhat(i) * sum_dy_xhat / n));
        });
        r.dgamma(c) = static_cast<double>(sum_dy_xhat);
        r.dbeta(c) = static_cast<double>(sum_dy);
    }
    return r;
}

// ---- generators and helpers ----

// An input shape of rank 2 to 4, with at least `min_per_channel` values per channel.
rc::Gen<Shape> genBatchShape(std::size_t min_per_channel = 2) {
    return rc::gen::suchThat(genShape(2, 4), [min_per_channel](const Shape& s) {
        return Layout(s).count() >= min_per_channel;
    });
}

// Distinct values, 1/4 apart: every channel with two values has a variance of at least 1/64,
// which keeps finite differences accurate.
rc::Gen<Array> genInput(const Shape& shape) { return genDistinct(shape, 0.25); }

// Like genInput, with each channel scaled by [1/16, 16] and shifted by [-64, 64].
rc::Gen<Array> genSpreadInput(const Shape& shape) {
    return rc::gen::exec([shape] {
        Array x = *genInput(shape);
        const Array scale = *genArray({shape[1]}, anywhere(0.0625, 16));
        const Array offset = *genArray({shape[1]}, anywhere(-64, 64));
        const Layout l(shape);
        for (std::size_t c = 0; c < l.c; ++c) l.forEach(c, [&](std::size_t i) { x.flat(i) = x.flat(i) * scale(c) + offset(c); });
        return x;
    });
}

// BatchNorm1d for rank 2 and 3, BatchNorm2d for rank 4.
template <class T = double>
std::unique_ptr<BatchNorm<T>> makeBatchNorm(std::size_t rank, std::size_t channels, BatchNormOptions options = {}) {
    if (rank == 4) return std::make_unique<BatchNorm2d<T>>(channels, options);
    return std::make_unique<BatchNorm1d<T>>(channels, options);
}

// A model holding a BatchNorm as "bn", so that the layer's where() names a path.
template <class T>
struct Holder : xgrad::Module<T> {
    std::shared_ptr<BatchNorm<T>> bn;
    explicit Holder(std::shared_ptr<BatchNorm<T>> m) : bn(this->register_module("bn", std::move(m))) {}
    Var<T> forward(const Var<T>& x) override { return (*bn)(x); }
    std::string describe() const override { return "Holder"; }
};

// ---- gradients ----

RC_GTEST_PROP(BatchNormGradients, BatchStatistics, ()) {
    // In training, and in eval without running statistics (torch then uses the batch's too).
    const bool training = *rc::gen::arbitrary<bool>();
    const bool affine = *rc::gen::arbitrary<bool>();
    const bool track = training && *rc::gen::arbitrary<bool>();
    const Shape shape = *genBatchShape();
    auto bn = makeBatchNorm(shape.size(), shape[1], {.affine = affine, .track_running_stats = track});
    bn->train(training);
    Inputs inputs{leaf(*genInput(shape))};
    if (affine) {
        setAffine(*bn, *genArray({shape[1]}, anywhere(-2, 2)), *genArray({shape[1]}, anywhere(-2, 2)));
        inputs.push_back(*bn->weight());
        inputs.push_back(*bn->bias());
    }
    checkGradients([&](const Inputs& in) { return (*bn)(in[0]); }, inputs, bn->describe());
}

RC_GTEST_PROP(BatchNormGradients, RunningStatisticsInEval, ()) {
    const bool affine = *rc::gen::arbitrary<bool>();
    const Shape shape = *genBatchShape(1);
    auto bn = makeBatchNorm(shape.size(), shape[1], {.affine = affine});
    bn->eval();
    buffer(*bn, "running_mean") = *genArray({shape[1]}, anywhere(-2, 2));
    buffer(*bn, "running_var") = *genArray({shape[1]}, anywhere(0.25, 4));
    Inputs inputs{leaf(*genArray(shape, anywhere(-4, 4)))};
    if (affine) {
        setAffine(*bn, *genArray({shape[1]}, anywhere(-2, 2)), *genArray({shape[1]}, anywhere(-2, 2)));
        inputs.push_back(*bn->weight());
        inputs.push_back(*bn->bias());
    }
    checkGradients([&](const Inputs& in) { return (*bn)(in[0]); }, inputs, bn->describe());
}

// ---- properties of the transform ----

RC_GTEST_PROP(BatchNormProperties, OutputHasMeanZeroAndVarianceOne, ()) {
    const Shape shape = *genBatchShape();
    const Array x = *genSpreadInput(shape);
    auto bn = makeBatchNorm(shape.size(), shape[1]);
    const Array y = (*bn)(Var<double>(x)).value();
    const Moments in = moments(x);
    const Moments out = moments(y);
    for (std::size_t c = 0; c < shape[1]; ++c) {
        RC_ASSERT(std::abs(out.mean[c]) <= 1e-12);
        // var / (var + eps) exactly: eps is what keeps it below 1.
        const double expected = in.var[c] / (in.var[c] + eps);
        RC_ASSERT(std::abs(out.var[c] - expected) <= 1e-10);
    }
}

RC_GTEST_PROP(BatchNormProperties, InvariantToPerChannelScaleAndShift, ()) {
    const Shape shape = *genBatchShape();
    const Array x = *genInput(shape);
    const Array a = *genArray({shape[1]}, anywhere(0.0625, 16));
    const Array b = *genArray({shape[1]}, anywhere(-64, 64));
    const Layout l(shape);
    Array ax_b = x;
    for (std::size_t c = 0; c < l.c; ++c) l.forEach(c, [&](std::size_t i) { ax_b.flat(i) = a(c) * x.flat(i) + b(c); });
    auto bn = makeBatchNorm(shape.size(), shape[1]);
    const Array y = (*bn)(Var<double>(x)).value();
    const Array y_ab = (*bn)(Var<double>(ax_b)).value();
    const Moments m = moments(x);
    for (std::size_t c = 0; c < l.c; ++c) {
        // BN(a·x + b) = (x - mean) / sqrt(var + eps/a²): it differs from BN(x) by a relative
        // sqrt((var + eps) / (var + eps/a²)) - 1, at most eps·|1 - 1/a²| / (2·var).
        const double relative = eps * std::abs(1.0 - 1.0 / (a(c) * a(c))) / (2.0 * m.var[c]);
        l.forEach(c, [&](std::size_t i) { RC_ASSERT(std::abs(y_ab.flat(i) - y.flat(i)) <= std::abs(y.flat(i)) * relative + 1e-9); });
    }
}

// Per channel, how far BN's Σ dx and Σ dx·x̂ are from what eps accounts for, and the rounding
// bound they must stay within.
struct GradientSumResidual {
    double sum, dot, bound;
};

std::vector<GradientSumResidual> inputGradientSumResiduals(const Array& x, const Array& gamma, const Array& dy) {
    const Shape shape(x.shape().begin(), x.shape().end());
    auto bn = makeBatchNorm(shape.size(), shape[1]);
    setAffine(*bn, gamma, Array(xt::zeros<double>({shape[1]})));
    Var<double> xv = leaf(x);
    (*bn)(xv).backward(dy);
    const Array& dx = xv.grad();
    const Moments m = moments(x);
    const Layout l(shape);
    std::vector<GradientSumResidual> residuals;
    for (std::size_t c = 0; c < l.c; ++c) {
        const double invstd = 1.0 / std::sqrt(m.var[c] + eps);
        double sum = 0, dot = 0, dy_dot = 0, bound = 0;
        l.forEach(c, [&](std::size_t i) {
            const double xhat = (x.flat(i) - m.mean[c]) * invstd;
            sum += dx.flat(i);
            dot += dx.flat(i) * xhat;
            dy_dot += dy.flat(i) * xhat;
            // dx cancels terms of size |γ|·invstd·|dy|, and x̂ carries a rounding error relative to
            // |x|·invstd, not to |x̂|: on a large mean with a small spread that dominates.
            bound += std::abs(gamma(c)) * invstd * std::abs(dy.flat(i)) * (1.0 + std::abs(x.flat(i)) * invstd) *
                     std::max(1.0, std::abs(xhat));
        });
        // Σ x̂² = n·var / (var + eps) rather than n, so eps leaves
        // Σ dx·x̂ = gamma·invstd·Σ(dy·x̂)·eps / (var + eps), which vanishes as var >> eps.
        const double dot_from_eps = gamma(c) * invstd * dy_dot * eps / (m.var[c] + eps);
        residuals.push_back({std::abs(sum), std::abs(dot - dot_from_eps), 1e-12 * bound + 1e-14});
    }
    return residuals;
}

RC_GTEST_PROP(BatchNormProperties, InputGradientSumsVanishPerChannel, ()) {
    const Shape shape = *genBatchShape();
    const Array x = *genSpreadInput(shape);
    const Array gamma = *genArray({shape[1]}, anywhere(-2, 2));
    const Array dy = *genArray(shape, anywhere(-2, 2));
    for (const GradientSumResidual& r : inputGradientSumResiduals(x, gamma, dy)) {
        RC_ASSERT(r.sum <= r.bound);
        RC_ASSERT(r.dot <= r.bound);
    }
}

// A case the property once drew: a mean of -64 with a spread of 1/16 and a constant dy, so
// that dx is rounding error alone and can be no smaller than x̂'s.
TEST(BatchNormProperties, InputGradientSumsOnALargeMeanWithAConstantGradient) {
    const Array x = {{-64.0703125, -64.0546875, -64.0234375},
                     {-64.0078125, -63.9921875, -63.9609375},
                     {-63.9453125, -64.0390625, -63.9765625}};
    const Array gamma = {-2.0, -2.0, -2.0};
    const Array dy = xt::full_like(x, -2.0);
    for (const GradientSumResidual& r : inputGradientSumResiduals(x, gamma, dy)) {
        EXPECT_LE(r.sum, r.bound);
        EXPECT_LE(r.dot, r.bound);
    }
}

// BN written with the library's primitive ops: mean, sub, square, sqrt, div, mul, add.
Var<double> composedBatchNorm(const Var<double>& x, const Var<double>& gamma, const Var<double>& beta) {
    xgrad::Axes axes{0};
    for (std::size_t d = 2; d < x.dim(); ++d) axes.push_back(static_cast<std::ptrdiff_t>(d));
    std::vector<std::ptrdiff_t> per_channel(x.dim(), 1);
    per_channel[1] = -1;
    const Var<double> centred = x - xgrad::mean(x, axes, true);
    const Var<double> var = xgrad::mean(xgrad::square(centred), axes, true);
    return centred / xgrad::sqrt(var + eps) * xgrad::reshape(gamma, per_channel) + xgrad::reshape(beta, per_channel);
}

RC_GTEST_PROP(BatchNormProperties, EqualsBatchNormComposedOfPrimitiveOps, ()) {
    const Shape shape = *genBatchShape();
    const Inputs in{leaf(*genSpreadInput(shape)), leaf(*genArray({shape[1]}, anywhere(-2, 2))),
                    leaf(*genArray({shape[1]}, anywhere(-2, 2)))};
    const Array seed = *genArray(shape, anywhere(-2, 2));
    const auto run = [&](const Var<double>& y) {
        for (auto v : in) v.zero_grad();
        y.backward(seed);
        return std::vector<Array>{y.value(), in[0].grad(), in[1].grad(), in[2].grad()};
    };
    const auto node = run(xgrad::batch_norm(in[0], {.weight = in[1], .bias = in[2]}));
    const auto composed = run(composedBatchNorm(in[0], in[1], in[2]));
    const char* what[] = {"value", "dx", "dgamma", "dbeta"};
    for (std::size_t k = 0; k < node.size(); ++k) checkClose(node[k], composed[k], 1e-10, what[k]);
}

// ---- float precision ----

// 1e4 + N(0, 1e-2) in float: the shifted statistics and the centred passes keep the output
// and dx as accurate as float allows (torch's fold x·alpha + shift would be off by ~0.05).
RC_GTEST_PROP(BatchNormPrecision, FloatInputWithLargeMeanAndSmallSpread, ()) {
    const Shape shape{*uniformIn<std::size_t>(2, 17), *uniformIn<std::size_t>(1, 5), *uniformIn<std::size_t>(1, 9),
                      *uniformIn<std::size_t>(1, 9)};
    std::mt19937 rng(*rc::gen::arbitrary<std::uint32_t>());
    std::normal_distribution<double> noise(0.0, 1e-2);
    std::uniform_real_distribution<double> uniform(-1.0, 1.0);
    xt::xarray<float> x = xt::xarray<float>::from_shape(shape);
    xt::xarray<float> dy = xt::xarray<float>::from_shape(shape);
    xt::xarray<float> gamma = xt::xarray<float>::from_shape({shape[1]});
    xt::xarray<float> beta = xt::xarray<float>::from_shape({shape[1]});
    for (auto& v : x) v = static_cast<float>(1e4 + noise(rng));
    for (auto& v : dy) v = static_cast<float>(uniform(rng));
    for (auto& v : gamma) v = static_cast<float>(1.5 + uniform(rng));
    for (auto& v : beta) v = static_cast<float>(uniform(rng));

    BatchNorm2d<float> bn(shape[1]);
    setAffine(bn, gamma, beta);
    Var<float> xv(x, true);
    const Var<float> y = bn(xv);
    y.backward(dy);
    const Array xd = xt::cast<double>(x);
    const Reference r = reference<Array>(xd, xt::cast<double>(gamma), xt::cast<double>(beta), xt::cast<double>(dy));
    const double dx_scale = xt::amax(xt::abs(r.dx))();
    for (std::size_t i = 0; i < x.size(); ++i) {
        RC_ASSERT(std::isfinite(y.value().flat(i)));
        RC_ASSERT(std::abs(y.value().flat(i) - r.y.flat(i)) <= 1e-5 * std::max(1.0, std::abs(r.y.flat(i))));
        RC_ASSERT(std::abs(xv.grad().flat(i) - r.dx.flat(i)) <= 1e-5 * dx_scale);
    }
}

// ---- the kernels on large shapes: parallel, fused per channel block or in passes ----

template <class T>
struct KernelRun {
    xt::xarray<T> y, dx, dgamma, dbeta;            // training
    xt::xarray<T> eval_y, eval_dx, eval_dgamma, eval_dbeta;  // eval, with running statistics
};

template <class T>
KernelRun<T> runKernels(const xt::xarray<T>& x, const xt::xarray<T>& dy, const xt::xarray<T>& gamma,
                        const xt::xarray<T>& beta, const xt::xarray<T>& running_mean, const xt::xarray<T>& running_var) {
    const xgrad::ChannelShape sh = xgrad::channel_shape(x.shape());
    KernelRun<T> k;
    for (auto* a : {&k.y, &k.dx, &k.eval_y, &k.eval_dx}) *a = xt::xarray<T>::from_shape(x.shape());
    for (auto* a : {&k.dgamma, &k.dbeta, &k.eval_dgamma, &k.eval_dbeta}) *a = xt::xarray<T>::from_shape({sh.c});
    batch_norm_train<T>(sh, x.data(), gamma.data(), beta.data(), eps, xgrad::NoEpilogue{}, dy.data(), k.y.data(),
                        k.dx.data(), k.dgamma.data(), k.dbeta.data());
    batch_norm_eval<T>(sh, x.data(), gamma.data(), beta.data(), running_mean.data(), running_var.data(), eps,
                       xgrad::NoEpilogue{}, dy.data(), k.eval_y.data(), k.eval_dx.data(), k.eval_dgamma.data(),
                       k.eval_dbeta.data());
    return k;
}

// The eval-mode reference: y = gamma·(x - rm)/sqrt(rv + eps) + beta, dx = dy·gamma/sqrt(rv + eps),
// dgamma = Σ dy·(x - rm)/sqrt(rv + eps), dbeta = Σ dy.
Reference evalReference(const Array& x, const Array& gamma, const Array& beta, const Array& dy, const Array& rm,
                        const Array& rv) {
    const Layout l(xgrad::to_shape(x.shape()));
    Reference r{Array::from_shape(xgrad::to_shape(x.shape())), Array::from_shape(xgrad::to_shape(x.shape())),
                xt::zeros<double>({l.c}), xt::zeros<double>({l.c})};
    for (std::size_t c = 0; c < l.c; ++c) {
        const double invstd = 1.0 / std::sqrt(rv(c) + eps);
        l.forEach(c, [&](std::size_t i) {
            const double xhat = (x.flat(i) - rm(c)) * invstd;
            r.y.flat(i) = gamma(c) * xhat + beta(c);
            r.dx.flat(i) = dy.flat(i) * gamma(c) * invstd;
            r.dgamma(c) += dy.flat(i) * xhat;
            r.dbeta(c) += dy.flat(i);
        });
    }
    return r;
}

// A shape whose forward output (more than 16 MiB) is streamed in the cache-blocked walk at one and
// two threads: a channel's x and y within a block, and channels for four blocks per thread.
template <class T>
const Shape streamed_shape = sizeof(T) == 8 ? Shape{8, 40, 64, 128} : Shape{16, 40, 64, 128};

// A shape whose backward (past the caches, a channel's dy, x and dx past a core's cache but within a
// last-level block) is blocked at one thread and, with too few channels for two, whole at two: the
// thread-count check then compares the two walks bit for bit.
template <class T>
const Shape last_level_blocked_shape = sizeof(T) == 8 ? Shape{10, 6, 128, 128} : Shape{20, 6, 128, 128};

template <class T>
void checkKernelsOnLargeShapes(double tolerance) {
    // Fused per channel block with one thread and in passes with two (few channels), fused with
    // both (many channels), in passes with both (long channels, or short rows); fused with both and
    // an output past the caches, streamed (LargeShapesReachTheStreamedForward).
    std::vector<Shape> shapes = {{8, 3, 100, 100}, {16, 32, 28, 28}, {2, 40, 2000},
                                 {3, 1, 50000},    {70000, 3},       {301, 50, 7}};
    shapes.push_back(streamed_shape<T>);
    shapes.push_back(last_level_blocked_shape<T>);
    std::mt19937 rng(7);
    std::normal_distribution<double> normal(0.0, 1.0);
    for (const Shape& shape : shapes) {
        SCOPED_TRACE(xgrad::shape_str(shape));
        const Layout l(shape);
        xt::xarray<T> x = xt::xarray<T>::from_shape(shape);
        xt::xarray<T> dy = xt::xarray<T>::from_shape(shape);
        xt::xarray<T> gamma = xt::xarray<T>::from_shape({l.c}), beta = gamma, rm = gamma, rv = gamma;
        for (std::size_t c = 0; c < l.c; ++c) {
            gamma(c) = static_cast<T>(1.0 + 0.5 * normal(rng));
            beta(c) = static_cast<T>(normal(rng));
            rm(c) = static_cast<T>(c + normal(rng));
            rv(c) = static_cast<T>(std::exp(normal(rng)));
            l.forEach(c, [&](std::size_t i) {
                x.flat(i) = static_cast<T>(3.0 + 2.0 * normal(rng) + static_cast<double>(c));
                dy.flat(i) = static_cast<T>(normal(rng));
            });
        }
        KernelRun<T> one, two;
        tbb::task_arena(1).execute([&] { one = runKernels(x, dy, gamma, beta, rm, rv); });
        tbb::task_arena(2).execute([&] { two = runKernels(x, dy, gamma, beta, rm, rv); });
        const auto in_double = [](const xt::xarray<T>& a) { return Array(xt::cast<double>(a)); };
        const Reference train = reference<Array>(in_double(x), in_double(gamma), in_double(beta), in_double(dy));
        const Reference eval = evalReference(in_double(x), in_double(gamma), in_double(beta), in_double(dy),
                                             in_double(rm), in_double(rv));
        const double sum_scale = std::sqrt(static_cast<double>(l.count()));
        const auto check = [&](const xt::xarray<T>& a1, const xt::xarray<T>& a2, const Array& e, double scale,
                               const char* what) {
            EXPECT_TRUE(a1 == a2) << what << ": one and two threads differ";
            for (std::size_t i = 0; i < a1.size(); ++i) {
                ASSERT_NEAR(a1.flat(i), e.flat(i), tolerance * std::max(scale, std::abs(e.flat(i)))) << what << " at " << i;
            }
        };
        check(one.y, two.y, train.y, 1.0, "y");
        check(one.dx, two.dx, train.dx, xt::amax(xt::abs(train.dx))(), "dx");
        check(one.dgamma, two.dgamma, train.dgamma, sum_scale, "dgamma");
        check(one.dbeta, two.dbeta, train.dbeta, sum_scale, "dbeta");
        check(one.eval_y, two.eval_y, eval.y, 1.0, "eval y");
        check(one.eval_dx, two.eval_dx, eval.dx, 1.0, "eval dx");
        check(one.eval_dgamma, two.eval_dgamma, eval.dgamma, sum_scale, "eval dgamma");
        check(one.eval_dbeta, two.eval_dbeta, eval.dbeta, sum_scale, "eval dbeta");
    }
}

TEST(BatchNormKernels, DoubleMatchesReferenceAndIsThreadCountIndependent) { checkKernelsOnLargeShapes<double>(1e-12); }
TEST(BatchNormKernels, FloatMatchesReferenceAndIsThreadCountIndependent) { checkKernelsOnLargeShapes<float>(2e-5); }

// The shapes above do reach the streamed forward and backward, and the last-level blocks: at one
// thread, and at two (whole) for the last-level shape, whose backward the thread-count check then
// compares with the blocked walk.
template <class T>
void checkStreamedShape() {
    expectStreamedWalk<T>(xgrad::Grouping::per_channel(xgrad::channel_shape(streamed_shape<T>)));
    const auto last = xgrad::Grouping::per_channel(xgrad::channel_shape(last_level_blocked_shape<T>));
    const xgrad::normalization_detail::GroupWalk one = xgrad::normalization_detail::group_walk(last, 3 * sizeof(T), 1);
    EXPECT_TRUE(one.blocked && one.last_level);
    EXPECT_FALSE(xgrad::normalization_detail::group_walk(last, 3 * sizeof(T), 2).blocked);
}
TEST(BatchNormKernels, LargeShapesReachTheStreamedForward) {
    checkStreamedShape<float>();
    checkStreamedShape<double>();
}

// A streamed copy writes every element, whatever the destination's alignment and the length.
template <class T>
void checkStreamCopy() {
    std::vector<T> src(300), dst(320);
    for (std::size_t i = 0; i < src.size(); ++i) src[i] = static_cast<T>(i) + T(0.5);
    for (std::size_t offset = 0; offset < 16; ++offset) {
        for (std::size_t n = 0; n <= 300 - 16; n += 7) {
            std::fill(dst.begin(), dst.end(), T(-1));
            xgrad::normalization_detail::stream_copy(dst.data() + offset, src.data(), n);
            xgrad::normalization_detail::stream_fence();
            for (std::size_t i = 0; i < dst.size(); ++i) {
                const T expected = i >= offset && i < offset + n ? src[i - offset] : T(-1);
                ASSERT_EQ(dst[i], expected) << "offset " << offset << ", length " << n << ", element " << i;
            }
        }
    }
}
TEST(BatchNormKernels, StreamCopyWritesEveryElementAtEveryAlignment) {
    checkStreamCopy<float>();
    checkStreamCopy<double>();
}

// ---- running statistics ----

RC_GTEST_PROP(BatchNormRunningStats, MomentumMovesThemByItsFactor, ()) {
    const Shape shape = *genBatchShape();
    const double momentum = *rc::gen::element(0.1, 0.5, 1.0);
    auto bn = makeBatchNorm(shape.size(), shape[1], {.momentum = momentum});
    std::vector<double> mean(shape[1], 0.0), var(shape[1], 1.0);
    for (int step = 0; step < 3; ++step) {
        const Array x = *genSpreadInput(shape);
        (*bn)(Var<double>(x));
        const Moments m = moments(x);
        for (std::size_t c = 0; c < shape[1]; ++c) {
            mean[c] = (1 - momentum) * mean[c] + momentum * m.mean[c];
            var[c] = (1 - momentum) * var[c] + momentum * m.unbiased[c];
        }
    }
    checkClose(*bn->running_mean(), xt::adapt(mean), 1e-12, "running_mean");
    checkClose(*bn->running_var(), xt::adapt(var), 1e-12, "running_var");
    RC_ASSERT(*bn->num_batches_tracked() == 3);
}

RC_GTEST_PROP(BatchNormRunningStats, MomentumNoneIsTheCumulativeAverage, ()) {
    const Shape shape = *genBatchShape();
    const int steps = *uniformIn(1, 6);
    auto bn = makeBatchNorm(shape.size(), shape[1], {.momentum = std::nullopt});
    std::vector<double> mean_sum(shape[1], 0.0), var_sum(shape[1], 0.0);
    for (int step = 0; step < steps; ++step) {
        const Array x = *genSpreadInput(shape);
        (*bn)(Var<double>(x));
        const Moments m = moments(x);
        for (std::size_t c = 0; c < shape[1]; ++c) {
            mean_sum[c] += m.mean[c];
            var_sum[c] += m.unbiased[c];
        }
    }
    for (std::size_t c = 0; c < shape[1]; ++c) {
        mean_sum[c] /= steps;
        var_sum[c] /= steps;
    }
    checkClose(*bn->running_mean(), xt::adapt(mean_sum), 1e-12, "running_mean");
    checkClose(*bn->running_var(), xt::adapt(var_sum), 1e-12, "running_var");
    RC_ASSERT(*bn->num_batches_tracked() == steps);
}

// Many batches from fixed per-channel normal distributions: the running statistics end near
// the population's (the tolerances are about 7 standard deviations of the estimates).
void checkConvergence(std::optional<double> momentum, double mean_tol, double var_tol) {
    const std::vector<double> mu{-3.0, 0.5, 40.0}, sigma{0.1, 2.0, 7.0};
    BatchNorm2d<float> bn(3, {.momentum = momentum});
    std::mt19937 rng(11);
    std::normal_distribution<double> normal(0.0, 1.0);
    const Shape shape{32, 3, 8, 8};
    const Layout l(shape);
    for (int step = 0; step < 300; ++step) {
        xt::xarray<float> x = xt::xarray<float>::from_shape(shape);
        for (std::size_t c = 0; c < 3; ++c) {
            l.forEach(c, [&](std::size_t i) { x.flat(i) = static_cast<float>(mu[c] + sigma[c] * normal(rng)); });
        }
        bn(Var<float>(x));
    }
    for (std::size_t c = 0; c < 3; ++c) {
        EXPECT_NEAR((*bn.running_mean())(c), mu[c], mean_tol * sigma[c]) << "channel " << c;
        EXPECT_NEAR((*bn.running_var())(c), sigma[c] * sigma[c], var_tol * sigma[c] * sigma[c]) << "channel " << c;
    }
    EXPECT_EQ(*bn.num_batches_tracked(), 300);
}

TEST(BatchNormRunningStats, ConvergeToThePopulationWithMomentum) { checkConvergence(0.1, 0.05, 0.05); }
TEST(BatchNormRunningStats, ConvergeToThePopulationWithCumulativeAverage) {
    checkConvergence(std::nullopt, 0.01, 0.0125);
}

TEST(BatchNormRunningStats, NumBatchesTrackedCountsTrainingBatchesOnly) {
    BatchNorm1d<double> bn(2);
    const Var<double> x(Array{{1.0, 2.0}, {3.0, 5.0}});
    bn(x);
    bn(x);
    EXPECT_EQ(*bn.num_batches_tracked(), 2);
    bn.eval();
    bn(x);
    EXPECT_EQ(*bn.num_batches_tracked(), 2);
    bn.train();
    EXPECT_THROW(bn(Var<double>(Array{{1.0, 2.0}})), xgrad::ShapeError);
    EXPECT_EQ(*bn.num_batches_tracked(), 2) << "a rejected batch must not be counted";
}

// ---- batch of one, errors, state ----

TEST(BatchNormErrors, BatchOfOneInTrainingIsTorchsError) {
    Holder<float> model(std::make_shared<BatchNorm1d<float>>(10));
    const Var<float> x(xt::xarray<float>(xt::ones<float>({1, 10})));
    EXPECT_EQ(error_of<xgrad::ShapeError>([&] { model(x); }),
              "bn (BatchNorm1d(10, eps=1e-05, momentum=0.1, affine=True, track_running_stats=True)): "
              "Expected more than 1 value per channel when training, got input size [1, 10]");
    auto bn2d = std::make_shared<BatchNorm2d<float>>(3);
    EXPECT_NE(error_of<xgrad::ShapeError>([&] { (*bn2d)(Var<float>(xt::xarray<float>(xt::ones<float>({1, 3, 1, 1})))); })
                  .find("Expected more than 1 value per channel when training, got input size [1, 3, 1, 1]"),
              std::string::npos);
    // Without running statistics, eval normalizes with the batch's: the same error.
    BatchNorm1d<float> untracked(10, {.track_running_stats = false});
    untracked.eval();
    EXPECT_THROW(untracked(x), xgrad::ShapeError);
}

TEST(BatchNormErrors, BatchOfOneInEvalUsesTheRunningStatistics) {
    BatchNorm1d<double> bn(3);
    bn(Var<double>(Array{{1.0, 2.0, 3.0}, {3.0, 6.0, 11.0}}));  // running: mean (0.2, 0.4, 0.7), var (1.1, 1.7, 4.1)
    bn.eval();
    const Array x{{0.5, -1.0, 2.0}};
    const Array y = bn(Var<double>(x)).value();
    for (std::size_t c = 0; c < 3; ++c) {
        const double expected = (x(0, c) - (*bn.running_mean())(c)) / std::sqrt((*bn.running_var())(c) + eps);
        EXPECT_NEAR(y(0, c), expected, 1e-14);
    }
    EXPECT_NEAR((*bn.running_mean())(2), 0.7, 1e-14);
    EXPECT_NEAR((*bn.running_var())(2), 4.1, 1e-14);
}

TEST(BatchNormErrors, ShapeErrorsNameTheLayerAndBothShapes) {
    Holder<float> model(std::make_shared<BatchNorm2d<float>>(64));
    const std::string where = "bn (BatchNorm2d(64, eps=1e-05, momentum=0.1, affine=True, track_running_stats=True))";
    EXPECT_EQ(error_of<xgrad::ShapeError>([&] { model(Var<float>(xt::xarray<float>::from_shape({64, 32, 14, 14}))); }),
              where + ": expected C=64 channels, got input (64, 32, 14, 14)");
    EXPECT_EQ(error_of<xgrad::ShapeError>([&] { model(Var<float>(xt::xarray<float>::from_shape({8, 64}))); }),
              where + ": expected input (N, C, H, W), got (8, 64)");
    BatchNorm1d<float> bn1d(4);
    EXPECT_EQ(error_of<xgrad::ShapeError>([&] { bn1d(Var<float>(xt::xarray<float>::from_shape({2, 4, 3, 3}))); }),
              bn1d.describe() + ": expected input (N, C) or (N, C, L), got (2, 4, 3, 3)");
    EXPECT_NE(error_of<xgrad::ShapeError>([&] {
                  xgrad::batch_norm(Var<float>(xt::xarray<float>::from_shape({2, 4})),
                                    {.weight = Var<float>(xt::xarray<float>::from_shape({3}))});
              }).find("batch_norm: weight of shape (3) given for an input with C=4 channels (2, 4)"),
              std::string::npos);
    EXPECT_THROW(xgrad::batch_norm(Var<float>(xt::xarray<float>::from_shape({2, 4})), {.training = false}),
                 std::invalid_argument);
}

TEST(BatchNormState, NamesInitialValuesAndRepr) {
    BatchNorm2d<float> bn(3);
    std::vector<std::string> names;
    for (const auto& [name, p] : bn.named_parameters()) names.push_back(name);
    for (const auto& [name, b] : bn.named_buffers()) names.push_back(name);
    EXPECT_EQ(names, (std::vector<std::string>{"weight", "bias", "running_mean", "running_var", "num_batches_tracked"}));
    EXPECT_EQ(bn.weight()->value(), xt::xarray<float>(xt::ones<float>({3})));
    EXPECT_EQ(bn.bias()->value(), xt::xarray<float>(xt::zeros<float>({3})));
    EXPECT_EQ(*bn.running_mean(), xt::xarray<float>(xt::zeros<float>({3})));
    EXPECT_EQ(*bn.running_var(), xt::xarray<float>(xt::ones<float>({3})));
    EXPECT_EQ(*bn.num_batches_tracked(), 0);
    EXPECT_TRUE(bn.weight()->requires_grad());

    BatchNorm1d<float> bare(5, {.eps = 1e-3, .momentum = std::nullopt, .affine = false, .track_running_stats = false});
    EXPECT_TRUE(bare.named_parameters().empty());
    EXPECT_TRUE(bare.named_buffers().empty());
    EXPECT_FALSE(bare.weight());
    EXPECT_EQ(bare.running_mean(), nullptr);
    EXPECT_EQ(bare.describe(), "BatchNorm1d(5, eps=0.001, momentum=None, affine=False, track_running_stats=False)");
}

// The backward writes into the gradient buffers that zero_grad keeps (no fresh dx, dgamma, dbeta
// every step), and adds to a gradient that is still live.
TEST(BatchNormGradientBuffers, ReusedAfterZeroGradAndAddedToWhenLive) {
    BatchNorm2d<float> bn(3);
    Var<float> x(xt::xarray<float>(xt::arange<float>(2 * 3 * 4 * 5).reshape({2, 3, 4, 5}) * 0.37f), true);
    Var<float> gamma = *bn.weight();
    const auto step = [&] {
        Var<float> y = bn(x);
        Var<float> loss = xgrad::sum(y * y);
        loss.backward();
    };
    step();
    const float* dx = x.grad().data();
    const float* dgamma = gamma.grad().data();
    const xt::xarray<float> first_dx = x.grad();
    const xt::xarray<float> first_dgamma = gamma.grad();
    x.zero_grad();
    gamma.zero_grad();
    step();
    EXPECT_EQ(x.grad().data(), dx);
    EXPECT_EQ(gamma.grad().data(), dgamma);
    EXPECT_EQ(x.grad(), first_dx);
    step();  // without zero_grad: added
    EXPECT_TRUE(xt::allclose(x.grad(), 2.0f * first_dx, 1e-5, 1e-6));
    EXPECT_TRUE(xt::allclose(gamma.grad(), 2.0f * first_dgamma, 1e-5, 1e-6));
}

}  // namespace
