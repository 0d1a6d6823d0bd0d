// The BatchNorm family beyond BatchNorm, in double unless said otherwise: Batch Renorm, Ghost
// Batch Norm, Filter Response Norm with its TLU, and weight-standardized Conv2d. Gradients against
// central differences in training and eval (Batch Renorm with r clipped, d clipped, both and
// neither: its r and d are constants of the backward, so where they are not clipped its gradients
// are those of BatchNorm with weight·r and bias + weight·d, which are checked against central
// differences); shapes drawn now and then large enough for the stages' parallel and cache-blocked
// paths, checked there by directional differences and for the same bits with one and two threads;
// the identities (Ghost BN with virtual_batch >= N and Batch Renorm with rmax = 1, dmax = 0 are
// BatchNorm bit for bit; Ghost BN is BatchNorm over each chunk in turn; the renorm schedule at its
// knots); running statistics and counters; and the errors for bad input.
#include <gtest/gtest.h>
#include <rapidcheck/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include <tbb/task_arena.h>
#include <xtensor/xview.hpp>

#include "layers/conv2d.hpp"
#include "layers/fold_batch_norm.hpp"
#include "layers/normalization/batch_norm.hpp"
#include "layers/normalization/batch_renorm.hpp"
#include "layers/normalization/blocked.hpp"
#include "layers/normalization/channel_reduce.hpp"
#include "layers/normalization/filter_response_norm.hpp"
#include "layers/normalization/ghost_batch_norm.hpp"
#include "layers/normalization/ghost_batch_norm_kernel.hpp"
#include "layers/normalization/normalize.hpp"
#include "layers/normalization/precise_bn.hpp"
#include "layers/normalization/runs.hpp"
#include "layers/normalization/weight_standardization.hpp"
#include "layers/sequential.hpp"
#include "tests/batch_norm_state.hpp"
#include "tests/error_message.hpp"
#include "tests/generators.hpp"
#include "tests/large_gradcheck.hpp"
#include "tests/streamed_walk.hpp"

namespace {

using namespace xgrad_test;
using Inputs = std::vector<Var<double>>;
using xgrad::BatchNorm;
using xgrad::BatchRenorm;
using xgrad::BatchRenormOptions;
using xgrad::GhostBatchNorm;
using xgrad::RenormSchedule;

constexpr double eps = 1e-5;

// ---- shapes ----

// x of shape (N, C, ...) seen as (N, C, S).
xgrad::ChannelShape layout(const Shape& shape) { return xgrad::channel_shape(shape); }

// Flat indices of channel c's elements, sample by sample.
template <class F>
void forEachOfChannel(const xgrad::ChannelShape& l, std::size_t c, F f) {
    for (std::size_t n = 0; n < l.n; ++n)
        for (std::size_t s = 0; s < l.s; ++s) f((n * l.c + c) * l.s + s);
}

// A dimension uniform in [lo, hi].
std::size_t dimIn(std::size_t lo, std::size_t hi) { return *uniformIn<std::size_t>(lo, hi + 1); }

// Shapes past the stages' thresholds (runs.hpp, blocked.hpp, channel_reduce.hpp): over 2^16
// elements or a block of channels in cache, for statistics per channel (BatchNorm's):
//  - many channels of a few thousand values: the cache-blocked walk, serial or in parallel;
//  - a few long channels: each stage parallel over the whole tensor, channels cut into blocks;
//  - short rows (S < 16): the rows layout of the reduction, rows merged in the elementwise pass.
rc::Gen<Shape> genLargePerChannelShape(std::size_t rank) {
    return rc::gen::exec([rank] {
        const int kind = *uniformIn(0, 3);
        if (rank == 2) return Shape{dimIn(3000, 5000), dimIn(16, 24)};
        if (kind == 0) return rank == 4 ? Shape{dimIn(4, 8), dimIn(16, 24), dimIn(24, 40), dimIn(24, 40)}
                                        : Shape{dimIn(4, 8), dimIn(16, 24), dimIn(600, 1500)};
        if (kind == 1) return rank == 4 ? Shape{dimIn(6, 8), dimIn(3, 5), dimIn(64, 96), dimIn(64, 96)}
                                        : Shape{dimIn(6, 8), dimIn(3, 5), dimIn(4096, 9000)};
        return rank == 4 ? Shape{dimIn(2000, 3000), dimIn(8, 12), 2, 3} : Shape{dimIn(2000, 3000), dimIn(8, 12), 6};
    });
}

// Mostly small shapes of rank 2 to 4 with at least two values per channel; one draw in eight large.
rc::Gen<Shape> genPerChannelShape() {
    return rc::gen::exec([] {
        if (*uniformIn(0, 8) == 0) return *genLargePerChannelShape(*uniformIn<std::size_t>(2, 5));
        return *rc::gen::suchThat(genShape(2, 4), [](const Shape& s) { return layout(s).per_channel() >= 2; });
    });
}

bool isLarge(const Shape& shape) { return xgrad::element_count(shape) > 4096; }

// Values for a tensor of `shape`: distinct ones 1/4 apart for small shapes (every channel's
// variance at least 1/64), seeded normal values of a spread per channel for large ones.
rc::Gen<Array> genValues(const Shape& shape) {
    if (!isLarge(shape)) return genDistinct(shape, 0.25);
    return rc::gen::map(rc::gen::arbitrary<std::uint32_t>(), [shape](std::uint32_t seed) {
        std::mt19937 rng(seed);
        std::normal_distribution<double> normal(0.0, 1.0);
        Array x = Array::from_shape(shape);
        const auto l = layout(shape);
        for (std::size_t c = 0; c < l.c; ++c) {
            const double centre = 3.0 * normal(rng);
            const double scale = 0.5 + std::abs(normal(rng));
            forEachOfChannel(l, c, [&](std::size_t i) { x.flat(i) = centre + scale * normal(rng); });
        }
        return x;
    });
}

Array perChannelValues(std::size_t channels, Domain domain) { return *genArray({channels}, domain); }

// ---- checks ----

// gradcheck for small inputs, directional differences for large ones.
void checkLayerGradients(const std::function<Var<double>(const Inputs&)>& f, const Inputs& inputs,
                         const std::string& what) {
    if (isLarge(inputs[0].shape())) {
        checkLargeGradients(f, inputs, *rc::gen::arbitrary<std::uint32_t>(), what);
    } else {
        checkGradients(f, inputs, what);
    }
}

// run() computes some arrays from scratch (a new layer each time); they must be the same bits
// whether TBB has one thread or two.
template <class T, class Run>
void checkSameBitsWithOneAndTwoThreads(const Run& run, const std::string& what) {
    std::vector<xt::xarray<T>> one, two;
    tbb::task_arena(1).execute([&] { one = run(); });
    tbb::task_arena(2).execute([&] { two = run(); });
    RC_ASSERT(one.size() == two.size());
    for (std::size_t k = 0; k < one.size(); ++k) {
        if (!(one[k] == two[k])) RC_FAIL(what + ": result " + std::to_string(k) + " differs with one and two threads");
    }
}

template <class T>
void checkSameBits(const std::vector<xt::xarray<T>>& a, const std::vector<xt::xarray<T>>& b,
                   const std::vector<std::string>& names) {
    for (std::size_t k = 0; k < names.size(); ++k) {
        if (!(a[k] == b[k])) RC_FAIL(names[k] + " differs");
    }
}

Array zerosOf(const Shape& shape) { return xt::zeros<double>(shape); }
xt::xarray<float> floatZerosOf(const Shape& shape) { return xt::zeros<float>(shape); }

// Fails unless `message` contains every part.
void expectMentions(const std::string& message, const std::vector<std::string>& parts) {
    for (const std::string& part : parts) {
        EXPECT_NE(message.find(part), std::string::npos) << "'" << message << "' does not mention '" << part << "'";
    }
}

std::int64_t& counter(xgrad::Module<double>& m, const std::string& name) {
    for (auto& [n, b] : m.named_buffers()) {
        if (n == name && b.counter) return *b.counter;
    }
    throw std::logic_error("no counter " + name);
}

// Per channel, in long double: the mean and the biased variance over (N, S).
struct ChannelMoments {
    std::vector<double> mean, var;
};

ChannelMoments channelMoments(const Array& x) {
    const auto l = layout(xgrad::to_shape(x.shape()));
    ChannelMoments m;
    for (std::size_t c = 0; c < l.c; ++c) {
        long double sum = 0, sq = 0;
        forEachOfChannel(l, c, [&](std::size_t i) { sum += x.flat(i); });
        const long double mean = sum / static_cast<long double>(l.per_channel());
        forEachOfChannel(l, c, [&](std::size_t i) { sq += (x.flat(i) - mean) * (x.flat(i) - mean); });
        m.mean.push_back(static_cast<double>(mean));
        m.var.push_back(static_cast<double>(sq / static_cast<long double>(l.per_channel())));
    }
    return m;
}

// ---- Batch Renorm ----

template <class T = double>
std::unique_ptr<BatchRenorm<T>> makeRenorm(std::size_t rank, std::size_t channels, BatchRenormOptions o = {}) {
    if (rank == 4) return std::make_unique<xgrad::BatchRenorm2d<T>>(channels, o);
    return std::make_unique<xgrad::BatchRenorm1d<T>>(channels, o);
}

template <class T = double>
std::unique_ptr<BatchNorm<T>> makeBatchNorm(std::size_t rank, std::size_t channels, xgrad::BatchNormOptions o = {}) {
    if (rank == 4) return std::make_unique<xgrad::BatchNorm2d<T>>(channels, o);
    return std::make_unique<xgrad::BatchNorm1d<T>>(channels, o);
}

// The same limits at every step.
RenormSchedule fixedLimits(double rmax, double dmax) {
    return {.rmax_start = rmax, .dmax_start = dmax, .relax_from = 0, .rmax_final = rmax, .rmax_final_at = 0,
            .dmax_final = dmax, .dmax_final_at = 0};
}

// Where a channel's running statistics put r and d: clipped or inside [1/rmax, rmax] and [-dmax, dmax].
struct Clipping {
    bool r;
    bool d;
};

// r and d for a batch of moments m against running statistics, clipped, in double.
struct Correction {
    Array r, d;
};

Correction renormCorrection(const ChannelMoments& m, const Array& running_mean, const Array& running_var, double rmax,
                            double dmax) {
    Correction k{zerosOf({m.mean.size()}), zerosOf({m.mean.size()})};
    for (std::size_t c = 0; c < m.mean.size(); ++c) {
        const double sigma = std::sqrt(running_var(c) + eps);
        k.r(c) = std::clamp(std::sqrt(m.var[c] + eps) / sigma, 1.0 / rmax, rmax);
        k.d(c) = std::clamp((m.mean[c] - running_mean(c)) / sigma, -dmax, dmax);
    }
    return k;
}

// Running statistics that give each channel of a batch with moments m the wanted clipping, with
// margins that finite differences do not cross. rmax >= 2.
struct Running {
    Array mean, var;
};

Running genRunningFor(const ChannelMoments& m, const std::vector<Clipping>& clipping, double rmax, double dmax) {
    Running out{zerosOf({m.mean.size()}), zerosOf({m.mean.size()})};
    for (std::size_t c = 0; c < m.mean.size(); ++c) {
        const double sigma_batch = std::sqrt(m.var[c] + eps);
        const bool above = *rc::gen::arbitrary<bool>();
        // sigma_B / sigma: beyond a limit by a factor of 1.5 to 3, or within 1/1.2 of both.
        const double beyond = rmax * (1.5 + 1.5 * *uniformIn(0, 101) / 100.0);
        const double inside = std::exp(std::log(rmax / 1.2) * (*uniformIn(-100, 101) / 100.0));
        const double ratio = clipping[c].r ? (above ? beyond : 1.0 / beyond) : inside;
        const double sigma = sigma_batch / ratio;
        // (mu_B - running_mean) / sigma: beyond dmax by 1.5 to 3 times, or within dmax / 1.5.
        const double sign = above ? 1.0 : -1.0;
        const double offset = clipping[c].d ? sign * (dmax * (1.5 + 1.5 * *uniformIn(0, 101) / 100.0) + 0.5)
                                            : dmax / 1.5 * (*uniformIn(-100, 101) / 100.0);
        out.mean(c) = m.mean[c] - offset * sigma;
        out.var(c) = sigma * sigma - eps;
    }
    return out;
}

RC_GTEST_PROP(BatchRenormGradients, TrainingIsBatchNormWithWeightRAndBiasD, ()) {
    // Every channel clips r, d, both or neither; r and d are constants of the backward.
    const Shape shape = *genPerChannelShape();
    const std::size_t channels = shape[1];
    const double rmax = 2.0 + *uniformIn(0, 101) / 100.0;
    const double dmax = 0.5 + *uniformIn(0, 251) / 100.0;
    std::vector<Clipping> clipping;
    for (std::size_t c = 0; c < channels; ++c) {
        clipping.push_back({*rc::gen::arbitrary<bool>(), *rc::gen::arbitrary<bool>()});
    }
    const double momentum = *rc::gen::element(0.01, 0.1, 1.0);
    auto renorm = makeRenorm(shape.size(), channels, {.momentum = momentum, .schedule = fixedLimits(rmax, dmax)});
    const Array x = *genValues(shape);
    const Array gamma = perChannelValues(channels, awayFromZero(0.25, 2));
    const Array beta = perChannelValues(channels, anywhere(-2, 2));
    setAffine(*renorm, gamma, beta);
    const ChannelMoments m = channelMoments(x);
    const Running before = genRunningFor(m, clipping, rmax, dmax);
    buffer(*renorm, "running_mean") = before.mean;
    buffer(*renorm, "running_var") = before.var;
    const Correction k = renormCorrection(m, before.mean, before.var, rmax, dmax);

    const Array dy = *genValues(shape) / 8.0;
    Var<double> xv = leaf(x);
    const Var<double> y = (*renorm)(xv);
    y.backward(dy);

    // BatchNorm with the batch's statistics, weight gamma·r and bias beta + gamma·d (r, d constants).
    const Var<double> r(k.r), d(k.d);
    const auto frozen = [&](const Inputs& in) {
        return xgrad::batch_norm(in[0], {.weight = Var<double>(in[1] * r), .bias = Var<double>(in[2] + in[1] * d)});
    };
    const Inputs in{leaf(x), leaf(gamma), leaf(beta)};
    const Var<double> expected = frozen(in);
    expected.backward(dy);
    checkClose(y.value(), expected.value(), 1e-10, "y");
    checkClose(xv.grad(), in[0].grad(), 1e-10, "dx");
    checkClose(renorm->weight()->grad(), in[1].grad(), 1e-10, "dweight");
    checkClose(renorm->bias()->grad(), in[2].grad(), 1e-10, "dbias");
    checkLayerGradients(frozen, in, "BatchNorm with weight·r and bias + weight·d");

    // BatchNorm's update of the running statistics, the unbiased variance averaged.
    const double n = static_cast<double>(layout(shape).per_channel());
    for (std::size_t c = 0; c < channels; ++c) {
        RC_ASSERT(std::abs((*renorm->running_mean())(c) - ((1 - momentum) * before.mean(c) + momentum * m.mean[c])) <=
                  1e-12 * std::max(1.0, std::abs(before.mean(c)) + std::abs(m.mean[c])));
        const double var = (1 - momentum) * before.var(c) + momentum * m.var[c] * n / (n - 1);
        RC_ASSERT(std::abs((*renorm->running_var())(c) - var) <= 1e-12 * std::max(1.0, var));
    }
    RC_ASSERT(*renorm->num_batches_tracked() == 1);
}

RC_GTEST_PROP(BatchRenormGradients, ClippedTrainingMatchesCentralDifferences, ()) {
    // With r and d both clipped in every channel they are constants of x too: the layer's own
    // gradient is then the derivative of its output.
    const Shape shape = *genPerChannelShape();
    const std::size_t channels = shape[1];
    const double rmax = 2.0 + *uniformIn(0, 101) / 100.0;
    const double dmax = 0.5 + *uniformIn(0, 251) / 100.0;
    auto renorm = makeRenorm(shape.size(), channels, {.schedule = fixedLimits(rmax, dmax)});
    const Array x = *genValues(shape);
    setAffine(*renorm, perChannelValues(channels, awayFromZero(0.25, 2)), perChannelValues(channels, anywhere(-2, 2)));
    const Running before = genRunningFor(channelMoments(x), std::vector<Clipping>(channels, {true, true}), rmax, dmax);
    const Inputs inputs{leaf(x), *renorm->weight(), *renorm->bias()};
    // Each evaluation starts from the same running statistics.
    checkLayerGradients(
        [&](const Inputs& in) {
            buffer(*renorm, "running_mean") = before.mean;
            buffer(*renorm, "running_var") = before.var;
            return (*renorm)(in[0]);
        },
        inputs, renorm->describe());
}

RC_GTEST_PROP(BatchRenormGradients, EvalIsBatchNormEval, ()) {
    const Shape shape = *genPerChannelShape();
    const std::size_t channels = shape[1];
    auto renorm = makeRenorm(shape.size(), channels, {.schedule = fixedLimits(3.0, 5.0)});
    auto bn = makeBatchNorm(shape.size(), channels, {.momentum = 0.01});
    const Array gamma = perChannelValues(channels, anywhere(-2, 2));
    const Array beta = perChannelValues(channels, anywhere(-2, 2));
    const Array running_mean = perChannelValues(channels, anywhere(-2, 2));
    const Array running_var = perChannelValues(channels, anywhere(0.25, 4));
    for (BatchNorm<double>* layer : {static_cast<BatchNorm<double>*>(renorm.get()), bn.get()}) {
        setAffine(*layer, gamma, beta);
        buffer(*layer, "running_mean") = running_mean;
        buffer(*layer, "running_var") = running_var;
        layer->eval();
    }
    const Array x = *genValues(shape);
    const Array dy = *genValues(shape);
    const auto run = [&](BatchNorm<double>& layer) {
        layer.zero_grad();
        Var<double> xv = leaf(x);
        const Var<double> y = layer(xv);
        y.backward(dy);
        return std::vector<Array>{y.value(), xv.grad(), layer.weight()->grad(), layer.bias()->grad()};
    };
    checkSameBits(run(*renorm), run(*bn), {"y", "dx", "dweight", "dbias"});
    checkLayerGradients([&](const Inputs& in) { return (*renorm)(in[0]); },
                        {leaf(x), *renorm->weight(), *renorm->bias()}, renorm->describe());
}

// rmax = 1 and dmax = 0 (the schedule's values before relax_from) make r = 1 and d = 0 exactly:
// the same arithmetic as BatchNorm's, so the same bits, also over several steps.
template <class T>
void checkRenormWithoutCorrectionIsBatchNorm(const Shape& shape) {
    const std::size_t channels = shape[1];
    auto renorm = makeRenorm<T>(shape.size(), channels);
    auto bn = makeBatchNorm<T>(shape.size(), channels, {.momentum = 0.01});
    const xt::xarray<T> gamma = xt::cast<T>(perChannelValues(channels, anywhere(-2, 2)));
    const xt::xarray<T> beta = xt::cast<T>(perChannelValues(channels, anywhere(-2, 2)));
    const xt::xarray<T> running_mean = xt::cast<T>(perChannelValues(channels, anywhere(-2, 2)));
    const xt::xarray<T> running_var = xt::cast<T>(perChannelValues(channels, anywhere(0.25, 4)));
    for (BatchNorm<T>* layer : {static_cast<BatchNorm<T>*>(renorm.get()), bn.get()}) {
        setAffine(*layer, gamma, beta);
        buffer(*layer, "running_mean") = running_mean;
        buffer(*layer, "running_var") = running_var;
    }
    for (int step = 0; step < 2; ++step) {
        RC_ASSERT(renorm->limits().rmax == 1.0 && renorm->limits().dmax == 0.0);
        const xt::xarray<T> x = xt::cast<T>(*genValues(shape));
        const xt::xarray<T> dy = xt::cast<T>(*genValues(shape));
        const auto run = [&](BatchNorm<T>& layer) {
            layer.zero_grad();
            Var<T> xv(x, true);
            const Var<T> y = layer(xv);
            y.backward(dy);
            return std::vector<xt::xarray<T>>{y.value(), xv.grad(), layer.weight()->grad(), layer.bias()->grad(),
                                              *layer.running_mean(), *layer.running_var()};
        };
        checkSameBits(run(*renorm), run(*bn), {"y", "dx", "dweight", "dbias", "running_mean", "running_var"});
    }
    RC_ASSERT(*renorm->num_batches_tracked() == 2);
}

RC_GTEST_PROP(BatchRenormIdentities, WithRmaxOneAndDmaxZeroIsBatchNormBitForBit, ()) {
    const Shape shape = *genPerChannelShape();
    checkRenormWithoutCorrectionIsBatchNorm<double>(shape);
    checkRenormWithoutCorrectionIsBatchNorm<float>(shape);
}

TEST(BatchRenormSchedule, ValuesAtTheKnots) {
    const RenormSchedule paper;
    const auto expect = [&](std::int64_t step, double rmax, double dmax) {
        EXPECT_DOUBLE_EQ(paper.at(step).rmax, rmax) << "step " << step;
        EXPECT_DOUBLE_EQ(paper.at(step).dmax, dmax) << "step " << step;
    };
    expect(0, 1.0, 0.0);
    expect(4999, 1.0, 0.0);
    expect(5000, 1.0, 0.0);
    expect(15000, 1.0 + 2.0 * 10000.0 / 35000.0, 2.5);
    expect(25000, 1.0 + 2.0 * 20000.0 / 35000.0, 5.0);
    expect(40000, 3.0, 5.0);
    expect(1000000, 3.0, 5.0);
    // Every number is the user's.
    const RenormSchedule own{.rmax_start = 1.5, .dmax_start = 0.5, .relax_from = 10, .rmax_final = 2.5,
                             .rmax_final_at = 20, .dmax_final = 1.5, .dmax_final_at = 30};
    EXPECT_DOUBLE_EQ(own.at(9).rmax, 1.5);
    EXPECT_DOUBLE_EQ(own.at(9).dmax, 0.5);
    EXPECT_DOUBLE_EQ(own.at(15).rmax, 2.0);
    EXPECT_DOUBLE_EQ(own.at(20).rmax, 2.5);
    EXPECT_DOUBLE_EQ(own.at(20).dmax, 1.0);
    EXPECT_DOUBLE_EQ(own.at(30).dmax, 1.5);
}

TEST(BatchRenormSchedule, NumBatchesTrackedIsTheStepAndIsInTheState) {
    xgrad::BatchRenorm2d<double> renorm(2);
    std::vector<std::string> names;
    for (const auto& [name, b] : renorm.named_buffers()) names.push_back(name);
    EXPECT_EQ(names, (std::vector<std::string>{"running_mean", "running_var", "num_batches_tracked"}));
    std::vector<std::string> params;
    for (const auto& [name, p] : renorm.named_parameters()) params.push_back(name);
    EXPECT_EQ(params, (std::vector<std::string>{"weight", "bias"}));

    counter(renorm, "num_batches_tracked") = 24999;
    EXPECT_DOUBLE_EQ(renorm.limits().dmax, 5.0 * 19999.0 / 20000.0);
    Array x = zerosOf({3, 2, 2, 2});
    for (std::size_t i = 0; i < x.size(); ++i) x.flat(i) = static_cast<double>(i % 5) - 2.0;
    renorm(Var<double>(x));
    EXPECT_EQ(*renorm.num_batches_tracked(), 25000);
    EXPECT_DOUBLE_EQ(renorm.limits().dmax, 5.0);
    renorm.eval();
    renorm(Var<double>(x));
    EXPECT_EQ(*renorm.num_batches_tracked(), 25000) << "eval counts no batch";
}

TEST(BatchRenormSchedule, TheLayerUsesTheLimitsOfItsStep) {
    // A batch whose r and d would be far outside any limit: the output shows which were used.
    const auto output_at = [](std::int64_t step) {
        xgrad::BatchRenorm1d<double> renorm(1);
        counter(renorm, "num_batches_tracked") = step;
        buffer(renorm, "running_mean") = fromVector({1}, {-100.0});
        buffer(renorm, "running_var") = fromVector({1}, {1e4});
        // mean 0, biased variance 1: r = sqrt(1 + eps) / sqrt(1e4 + eps), d = 100 / sqrt(1e4 + eps).
        return renorm(Var<double>(fromVector({2, 1}, {-1.0, 1.0}))).value();
    };
    const double sigma_batch = std::sqrt(1.0 + eps);
    const auto expected = [&](double rmax, double dmax) {
        const double r = std::max(1.0 / rmax, sigma_batch / std::sqrt(1e4 + eps));
        const double d = std::min(dmax, 100.0 / std::sqrt(1e4 + eps));
        return fromVector({2, 1}, {-r / sigma_batch + d, r / sigma_batch + d});
    };
    EXPECT_EQ(closeMismatch(output_at(0), expected(1.0, 0.0), 1e-14, "step 0"), "");
    EXPECT_EQ(closeMismatch(output_at(22500), expected(1.0 + 2.0 * 17500.0 / 35000.0, 5.0 * 17500.0 / 20000.0), 1e-14,
                            "step 22500"),
              "");
    EXPECT_EQ(closeMismatch(output_at(50000), expected(3.0, 5.0), 1e-14, "step 50000"), "");
}

TEST(BatchRenormErrors, ScheduleAndInput) {
    expectMentions(error_of([] { xgrad::BatchRenorm2d<float>(3, {.schedule = {.rmax_final = 0.5}}); }),
                   {"BatchRenorm2d", "rmax >= 1", "0.5"});
    expectMentions(error_of([] { xgrad::BatchRenorm2d<float>(3, {.schedule = {.dmax_start = -1.0}}); }),
                   {"BatchRenorm2d", "dmax >= 0", "-1"});
    expectMentions(error_of([] { xgrad::BatchRenorm1d<float>(3, {.schedule = {.rmax_final_at = 100}}); }),
                   {"BatchRenorm1d", "relax_from = 5000", "100"});
    xgrad::BatchRenorm2d<double> renorm(3);
    expectMentions(error_of([&] { renorm(Var<double>(zerosOf({2, 3, 4}))); }),
                   {renorm.describe(), "(N, C, H, W)", "(2, 3, 4)"});
    expectMentions(error_of([&] { renorm(Var<double>(zerosOf({2, 4, 2, 2}))); }),
                   {renorm.describe(), "C=3", "(2, 4, 2, 2)"});
    expectMentions(error_of([&] { renorm(Var<double>(zerosOf({1, 3, 1, 1}))); }),
                   {renorm.describe(), "Expected more than 1 value per channel", "[1, 3, 1, 1]"});
}

TEST(BatchRenormState, Describe) {
    EXPECT_EQ(xgrad::BatchRenorm2d<float>(6).describe(),
              "BatchRenorm2d(6, eps=1e-05, momentum=0.01, affine=True, rmax=1->3 over steps 5000-40000, "
              "dmax=0->5 over steps 5000-25000)");
}

// ---- Ghost Batch Norm ----

template <class T = double>
std::unique_ptr<GhostBatchNorm<T>> makeGhost(std::size_t rank, std::size_t channels, std::size_t virtual_batch,
                                             xgrad::GhostBatchNormOptions o = {}) {
    if (rank == 4) return std::make_unique<xgrad::GhostBatchNorm2d<T>>(channels, virtual_batch, o);
    return std::make_unique<xgrad::GhostBatchNorm1d<T>>(channels, virtual_batch, o);
}

// A virtual batch size for `shape` whose every chunk has at least two values per channel.
rc::Gen<std::size_t> genVirtualBatch(const Shape& shape) {
    const auto l = layout(shape);
    return rc::gen::suchThat(uniformIn<std::size_t>(1, l.n + 2), [l](std::size_t vb) {
        const std::size_t last = l.n % vb == 0 ? std::min(vb, l.n) : l.n % vb;
        return last * l.s >= 2 && std::min(vb, l.n) * l.s >= 2;
    });
}

RC_GTEST_PROP(GhostBatchNormGradients, Training, ()) {
    const Shape shape = *genPerChannelShape();
    const std::size_t channels = shape[1];
    const std::size_t vb = *genVirtualBatch(shape);
    const bool affine = *rc::gen::arbitrary<bool>();
    auto ghost = makeGhost(shape.size(), channels, vb, {.affine = affine});
    Inputs inputs{leaf(*genValues(shape))};
    if (affine) {
        setAffine(*ghost, perChannelValues(channels, anywhere(-2, 2)), perChannelValues(channels, anywhere(-2, 2)));
        inputs.push_back(*ghost->weight());
        inputs.push_back(*ghost->bias());
    }
    checkLayerGradients([&](const Inputs& in) { return (*ghost)(in[0]); }, inputs, ghost->describe());
}

RC_GTEST_PROP(GhostBatchNormGradients, EvalWithRunningStatistics, ()) {
    const Shape shape = *genPerChannelShape();
    const std::size_t channels = shape[1];
    auto ghost = makeGhost(shape.size(), channels, *uniformIn<std::size_t>(1, 5));
    ghost->eval();
    buffer(*ghost, "running_mean") = perChannelValues(channels, anywhere(-2, 2));
    buffer(*ghost, "running_var") = perChannelValues(channels, anywhere(0.25, 4));
    setAffine(*ghost, perChannelValues(channels, anywhere(-2, 2)), perChannelValues(channels, anywhere(-2, 2)));
    checkLayerGradients([&](const Inputs& in) { return (*ghost)(in[0]); },
                        {leaf(*genValues(shape)), *ghost->weight(), *ghost->bias()}, ghost->describe());
}

// One training step of a BatchNorm<T> layer on x with output gradient dy: y, dx, dweight, dbias.
template <class T>
std::vector<xt::xarray<T>> trainingStep(BatchNorm<T>& layer, const xt::xarray<T>& x, const xt::xarray<T>& dy) {
    layer.zero_grad();
    Var<T> xv(x, true);
    const Var<T> y = layer(xv);
    y.backward(dy);
    return {y.value(), xv.grad(), layer.weight()->grad(), layer.bias()->grad()};
}

template <class T>
void checkWholeBatchGhostIsBatchNorm(const Shape& shape) {
    const std::size_t channels = shape[1];
    const std::optional<double> momentum = *rc::gen::element<std::optional<double>>(0.1, 0.5, std::nullopt);
    auto ghost = makeGhost<T>(shape.size(), channels, shape[0] + *uniformIn<std::size_t>(0, 3), {.momentum = momentum});
    auto bn = makeBatchNorm<T>(shape.size(), channels, {.momentum = momentum});
    const xt::xarray<T> gamma = xt::cast<T>(perChannelValues(channels, anywhere(-2, 2)));
    const xt::xarray<T> beta = xt::cast<T>(perChannelValues(channels, anywhere(-2, 2)));
    setAffine(*ghost, gamma, beta);
    setAffine(*bn, gamma, beta);
    for (int step = 0; step < 2; ++step) {
        const xt::xarray<T> x = xt::cast<T>(*genValues(shape));
        const xt::xarray<T> dy = xt::cast<T>(*genValues(shape));
        checkSameBits(trainingStep<T>(*ghost, x, dy), trainingStep<T>(*bn, x, dy), {"y", "dx", "dweight", "dbias"});
        checkSameBits<T>({*ghost->running_mean(), *ghost->running_var()}, {*bn->running_mean(), *bn->running_var()},
                         {"running_mean", "running_var"});
    }
    RC_ASSERT(*ghost->num_batches_tracked() == 2);
    RC_ASSERT(*bn->num_batches_tracked() == 2);
}

RC_GTEST_PROP(GhostBatchNormIdentities, VirtualBatchOfAtLeastNIsBatchNormBitForBit, ()) {
    const Shape shape = *genPerChannelShape();
    checkWholeBatchGhostIsBatchNorm<double>(shape);
    checkWholeBatchGhostIsBatchNorm<float>(shape);
}

RC_GTEST_PROP(GhostBatchNormIdentities, IsBatchNormOverEachChunkInTurn, ()) {
    // torch.cat([bn(c) for c in x.split(vb)]) with one BatchNorm: outputs, input gradients and
    // the running statistics bit for bit; dweight and dbias, the chunks' sums added, to rounding.
    const Shape shape = *genPerChannelShape();
    const std::size_t channels = shape[1];
    const std::size_t vb = *genVirtualBatch(shape);
    const std::optional<double> momentum = *rc::gen::element<std::optional<double>>(0.1, std::nullopt);
    auto ghost = makeGhost(shape.size(), channels, vb, {.momentum = momentum});
    auto bn = makeBatchNorm(shape.size(), channels, {.momentum = momentum});
    const Array gamma = perChannelValues(channels, anywhere(-2, 2));
    const Array beta = perChannelValues(channels, anywhere(-2, 2));
    setAffine(*ghost, gamma, beta);
    setAffine(*bn, gamma, beta);
    const Array x = *genValues(shape);
    const Array dy = *genValues(shape);
    const std::vector<Array> ghost_step = trainingStep(*ghost, x, dy);

    Array y = Array::from_shape(shape), dx = Array::from_shape(shape);
    Array dgamma = xt::zeros<double>({channels}), dbeta = xt::zeros<double>({channels});
    std::size_t chunks = 0;
    for (std::size_t first = 0; first < shape[0]; first += vb, ++chunks) {
        auto rows = xt::range(first, std::min(shape[0], first + vb));
        const std::vector<Array> step = trainingStep(*bn, Array(xt::view(x, rows)), Array(xt::view(dy, rows)));
        xt::view(y, rows) = step[0];
        xt::view(dx, rows) = step[1];
        dgamma += step[2];
        dbeta += step[3];
    }
    checkSameBits<double>({ghost_step[0], ghost_step[1], *ghost->running_mean(), *ghost->running_var()},
                          {y, dx, *bn->running_mean(), *bn->running_var()}, {"y", "dx", "running_mean", "running_var"});
    checkClose(ghost_step[2], dgamma, 1e-12, "dweight");
    checkClose(ghost_step[3], dbeta, 1e-12, "dbias");
    RC_ASSERT(*ghost->num_batches_tracked() == static_cast<std::int64_t>(chunks));
}

TEST(GhostBatchNormErrors, VirtualBatchZeroAndChunksOfOneValue) {
    expectMentions(error_of([] { xgrad::GhostBatchNorm2d<float>(3, 0); }),
                   {"GhostBatchNorm2d", "virtual_batch >= 1", "got 0"});
    // 5 samples by 2: chunks of 2, 2 and 1, the last with one value per channel.
    xgrad::GhostBatchNorm1d<double> ghost(3, 2);
    const Var<double> x(zerosOf({5, 3}));
    expectMentions(error_of([&] { ghost(x); }),
                   {ghost.describe(), "virtual batch 3 of 3", "samples 4 to 4", "1 value per channel", "(5, 3)",
                    "virtual_batch=2"});
    EXPECT_EQ(*ghost.num_batches_tracked(), 0) << "a rejected batch moves nothing";
    EXPECT_EQ(*ghost.running_mean(), xt::zeros<double>({3}));
    // With two values per sample the same split is fine, and eval takes any batch.
    ghost(Var<double>(zerosOf({5, 3, 2})));
    EXPECT_EQ(*ghost.num_batches_tracked(), 3);
    ghost.eval();
    ghost(x);
    expectMentions(error_of([&] { ghost(Var<double>(zerosOf({5, 4}))); }), {ghost.describe(), "C=3", "(5, 4)"});
    ghost.train();
    expectMentions(error_of([&] { ghost(Var<double>(zerosOf({0, 3, 2}))); }),
                   {ghost.describe(), "at least one sample", "(0, 3, 2)"});
}

// The kernels with two threads where the chunks run in parallel (a batch of at least two tasks'
// worth, small chunks) and where they run in turn (chunks past a core's cache), against
// BatchNorm's stages over each chunk in turn, the running statistics moved in between, each chunk
// by a factor of its own (a cumulative average): y, dx and the running statistics bit for bit,
// dgamma and dbeta the chunks' sums added in chunk order.
template <class T>
void checkGhostKernelsAgainstChunksInTurn(const xgrad::ChannelShape& sh, std::size_t vb) {
    std::mt19937 rng(11);
    std::normal_distribution<double> normal(0.0, 1.0);
    const auto draw = [&](std::size_t count, double mean, double spread) {
        std::vector<T> v(count);
        for (T& e : v) e = static_cast<T>(mean + spread * normal(rng));
        return v;
    };
    const std::vector<T> x = draw(sh.size(), 3.0, 2.0), dy = draw(sh.size(), 0.0, 1.0);
    const std::vector<T> gamma = draw(sh.c, 1.0, 0.5), beta = draw(sh.c, 0.0, 0.5);
    const std::vector<xgrad::VirtualBatch> chunks = xgrad::virtual_batches(sh.n, vb);
    std::vector<double> factors;
    for (std::size_t k = 0; k < chunks.size(); ++k) factors.push_back(1.0 / static_cast<double>(k + 1));

    std::vector<T> y(sh.size()), dx(sh.size()), dgamma(sh.c), dbeta(sh.c), mean(sh.c, T(0)), var(sh.c, T(1));
    tbb::task_arena(2).execute([&] {
        const xgrad::ChunkRunningStats<T> running{mean.data(), var.data(), factors};
        const auto batches =
            xgrad::ghost_batch_norm_forward(sh, chunks, x.data(), gamma.data(), beta.data(), eps, running, y.data());
        xgrad::ghost_batch_norm_backward(sh, chunks, batches, dy.data(), x.data(), gamma.data(), beta.data(),
                                         xgrad::NormalizeGrads<T>{dx.data(), dgamma.data(), dbeta.data()});
    });

    std::vector<T> y_turn(sh.size()), dx_turn(sh.size()), chunk_dgamma(sh.c), chunk_dbeta(sh.c);
    std::vector<T> mean_turn(sh.c, T(0)), var_turn(sh.c, T(1));
    std::vector<double> dgamma_sum(sh.c), dbeta_sum(sh.c);
    for (std::size_t k = 0; k < chunks.size(); ++k) {
        const xgrad::Grouping grouping = xgrad::Grouping::per_channel({chunks[k].samples, sh.c, sh.s});
        const std::size_t at = chunks[k].first * sh.c * sh.s;
        xgrad::NormalizeOptions<T> options;
        options.eps = eps;
        options.gamma = gamma.data();
        options.beta = beta.data();
        options.running = xgrad::RunningStats<T>{mean_turn.data(), var_turn.data(), factors[k]};
        const xgrad::NormalizedBatch batch =
            xgrad::normalize_batch(grouping, x.data() + at, options, xgrad::NoEpilogue{}, y_turn.data() + at);
        xgrad::normalize_backward(grouping, batch, xgrad::GradientThrough::batch(), dy.data() + at, x.data() + at,
                                  gamma.data(), beta.data(), xgrad::NoEpilogue{},
                                  xgrad::NormalizeGrads<T>{dx_turn.data() + at, chunk_dgamma.data(), chunk_dbeta.data()});
        for (std::size_t c = 0; c < sh.c; ++c) {
            dgamma_sum[c] += static_cast<double>(chunk_dgamma[c]);
            dbeta_sum[c] += static_cast<double>(chunk_dbeta[c]);
        }
    }
    EXPECT_TRUE(y == y_turn) << "y";
    EXPECT_TRUE(dx == dx_turn) << "dx";
    EXPECT_TRUE(mean == mean_turn) << "running_mean";
    EXPECT_TRUE(var == var_turn) << "running_var";
    for (std::size_t c = 0; c < sh.c; ++c) {
        EXPECT_EQ(dgamma[c], static_cast<T>(dgamma_sum[c])) << "dgamma " << c;
        EXPECT_EQ(dbeta[c], static_cast<T>(dbeta_sum[c])) << "dbeta " << c;
    }
}

TEST(GhostBatchNormKernels, ChunksInParallelAndInTurnMatchBatchNormOverEachChunk) {
    // Batches of at least twice the two tasks' worth the parallel walk asks for: (128, 512) by 16,
    // and 118 samples by 16, seven chunks and a smaller eighth, in parallel.
    static_assert(2 * 2 * xgrad::normalization_detail::kTaskElems <= 128 * 512);
    checkGhostKernelsAgainstChunksInTurn<float>({128, 512, 1}, 16);
    checkGhostKernelsAgainstChunksInTurn<double>({118, 64, 9}, 16);
    // Chunks of 3 MB of float: in turn, each parallel within.
    checkGhostKernelsAgainstChunksInTurn<float>({8, 3, 131072}, 2);
    EXPECT_THROW(xgrad::virtual_batches(4, 0), std::invalid_argument);
    // One running factor a chunk, or an error before anything is written.
    std::vector<float> x(16, 1.0f), y(16, 7.0f), mean(2, 0.0f), var(2, 1.0f);
    const xgrad::ChunkRunningStats<float> one_factor{mean.data(), var.data(), {0.1}};
    EXPECT_THROW(xgrad::ghost_batch_norm_forward<float>({8, 2, 1}, xgrad::virtual_batches(8, 4), x.data(), nullptr,
                                                        nullptr, eps, one_factor, y.data()),
                 std::invalid_argument);
    EXPECT_EQ(y, std::vector<float>(16, 7.0f));
}

TEST(GhostBatchNormState, DescribeAndState) {
    xgrad::GhostBatchNorm2d<float> ghost(3, 4, {.momentum = std::nullopt});
    EXPECT_EQ(ghost.describe(), "GhostBatchNorm2d(3, virtual_batch=4, eps=1e-05, momentum=None, affine=True)");
    std::vector<std::string> names;
    for (const auto& [name, b] : ghost.named_buffers()) names.push_back(name);
    EXPECT_EQ(names, (std::vector<std::string>{"running_mean", "running_var", "num_batches_tracked"}));
}

// ---- recalibration (PreciseBN) ----

TEST(BatchNormFamilyRecalibration, GhostAveragesItsChunksAndRenormItsBatches) {
    // Batches of 6 samples in virtual batches of 4 and 2; every layer starts from other statistics.
    std::mt19937 rng(3);
    std::normal_distribution<double> normal(0.0, 1.0);
    std::vector<Array> batches;
    for (int b = 0; b < 3; ++b) {
        Array x = Array::from_shape({6, 2, 3});
        for (auto& v : x) v = 2.0 + 3.0 * normal(rng);
        batches.push_back(x);
    }
    const auto source = [&](std::size_t i) { return batches[i]; };
    // The average over `parts` of each part's channel means and unbiased variances.
    const auto average = [](const std::vector<Array>& parts) {
        Array mean = xt::zeros<double>({2}), var = xt::zeros<double>({2});
        for (const Array& p : parts) {
            const ChannelMoments m = channelMoments(p);
            const double n = static_cast<double>(layout(xgrad::to_shape(p.shape())).per_channel());
            for (std::size_t c = 0; c < 2; ++c) {
                mean(c) += m.mean[c] / static_cast<double>(parts.size());
                var(c) += m.var[c] * n / (n - 1) / static_cast<double>(parts.size());
            }
        }
        return std::make_pair(mean, var);
    };
    Array ghost_mean = xt::zeros<double>({2}), ghost_var = xt::zeros<double>({2});
    for (const Array& x : batches) {
        const auto [m, v] = average({Array(xt::view(x, xt::range(0, 4))), Array(xt::view(x, xt::range(4, 6)))});
        ghost_mean += m / 3.0;
        ghost_var += v / 3.0;
    }
    const auto [renorm_mean, renorm_var] = average(batches);

    xgrad::Sequential<double> ghost_model, renorm_model;
    auto ghost = ghost_model.add("ghost", std::make_shared<xgrad::GhostBatchNorm1d<double>>(2, 4));
    auto renorm = renorm_model.add("renorm", std::make_shared<xgrad::BatchRenorm1d<double>>(2));
    for (BatchNorm<double>* layer : std::initializer_list<BatchNorm<double>*>{ghost.get(), renorm.get()}) {
        buffer(*layer, "running_mean") = fromVector({2}, {5.0, -5.0});
        buffer(*layer, "running_var") = fromVector({2}, {9.0, 0.1});
    }
    counter(*renorm, "num_batches_tracked") = 30000;
    EXPECT_EQ(xgrad::recalibrate_batch_norm<double>(ghost_model, batches.size(), source), 1u);
    EXPECT_EQ(xgrad::recalibrate_batch_norm<double>(renorm_model, batches.size(), source), 1u);
    for (std::size_t c = 0; c < 2; ++c) {
        EXPECT_NEAR((*ghost->running_mean())(c), ghost_mean(c), 1e-12);
        EXPECT_NEAR((*ghost->running_var())(c), ghost_var(c), 1e-12);
        EXPECT_NEAR((*renorm->running_mean())(c), renorm_mean(c), 1e-12);
        EXPECT_NEAR((*renorm->running_var())(c), renorm_var(c), 1e-12);
    }
    EXPECT_EQ(*ghost->num_batches_tracked(), 0);
    EXPECT_EQ(*renorm->num_batches_tracked(), 30000) << "the schedule's step is left as it was";
}

// ---- Filter Response Norm ----

// The smallest of genLargeFrnShape's streamed kind.
const Shape streamed_frn_shape{2, 17, 256, 256};

// Shapes (N, C, H, W) past the thresholds of statistics per (sample, channel): many instances
// of a few thousand values (cache-blocked), two long instances (parallel over blocks of each),
// short instances (the rows layout), and instances in cache blocks of a tensor past the caches in
// double (the elementwise passes' outputs streamed: FrnShapes.TheLargestAreStreamed).
rc::Gen<Shape> genLargeFrnShape() {
    return rc::gen::exec([] {
        // The streamed kind the rarest (a case takes about a second), and not the one shrunk to.
        if (*uniformIn(0, 8) == 7) return Shape{2, dimIn(17, 19), 256, 256};  // streamed_frn_shape and larger
        const int kind = *uniformIn(0, 3);
        if (kind == 0) return Shape{dimIn(2, 4), dimIn(4, 8), dimIn(48, 64), dimIn(48, 64)};
        if (kind == 1) return Shape{1, 2, dimIn(200, 260), dimIn(200, 260)};
        return Shape{dimIn(1500, 2500), dimIn(8, 12), 2, 3};
    });
}

// Small shapes (N, C, H, W); one draw in eight large.
rc::Gen<Shape> genFrnShape() {
    return rc::gen::exec([] {
        if (*uniformIn(0, 8) == 0) return *genLargeFrnShape();
        return Shape{dimIn(1, 3), dimIn(1, 4), dimIn(1, 4), dimIn(1, 4)};
    });
}

// y = weight·x / sqrt(mean of x² over (H, W) + eps) + bias, per channel, before the TLU.
Array frnBeforeTlu(const Array& x, const Array& weight, const Array& bias, double frn_eps) {
    const auto l = layout(xgrad::to_shape(x.shape()));
    Array y = Array::from_shape(x.shape());
    for (std::size_t n = 0; n < l.n; ++n) {
        for (std::size_t c = 0; c < l.c; ++c) {
            const std::size_t base = (n * l.c + c) * l.s;
            long double sq = 0;
            for (std::size_t s = 0; s < l.s; ++s) sq += x.flat(base + s) * x.flat(base + s);
            const double scale = static_cast<double>(1.0L / std::sqrt(sq / l.s + frn_eps));
            for (std::size_t s = 0; s < l.s; ++s) y.flat(base + s) = weight(c) * x.flat(base + s) * scale + bias(c);
        }
    }
    return y;
}

// tau per channel away from every y of the channel (at least 1e-3): below them all, above them
// all, or in a gap between two of them.
Array genTauAwayFrom(const Array& y) {
    const auto l = layout(xgrad::to_shape(y.shape()));
    Array tau = zerosOf({l.c});
    for (std::size_t c = 0; c < l.c; ++c) {
        std::vector<double> values;
        forEachOfChannel(l, c, [&](std::size_t i) { values.push_back(y.flat(i)); });
        std::sort(values.begin(), values.end());
        std::vector<double> candidates{values.front() - 0.5, values.back() + 0.5};
        for (std::size_t i = 1; i < values.size(); ++i) {
            if (values[i] - values[i - 1] >= 2e-3) candidates.push_back(0.5 * (values[i] + values[i - 1]));
        }
        tau(c) = candidates[*uniformIn<std::size_t>(0, candidates.size())];
    }
    return tau;
}

struct FrnCase {
    std::shared_ptr<xgrad::FilterResponseNorm2d<double>> frn;
    Array x;
};

FrnCase genFrnCase(const Shape& shape) {
    FrnCase k{std::make_shared<xgrad::FilterResponseNorm2d<double>>(shape[1]), *genValues(shape)};
    // No zero (1/8 is off the grid of genValues' 1/4 steps), so that no instance has nu² of the order
    // of eps: x / sqrt(nu² + eps) would bend on the scale of sqrt(eps), too sharply for central
    // differences.
    for (double& v : k.x) v = v == 0.0 ? 0.125 : v;
    const Array weight = perChannelValues(shape[1], awayFromZero(0.25, 2));
    const Array bias = perChannelValues(shape[1], anywhere(-1, 1));
    Var<double>(*k.frn->weight()).mutable_value() = weight;
    Var<double>(*k.frn->bias()).mutable_value() = bias;
    Var<double>(k.frn->tau()).mutable_value() = genTauAwayFrom(frnBeforeTlu(k.x, weight, bias, k.frn->eps()));
    return k;
}

RC_GTEST_PROP(FilterResponseNormGradients, TrainingAndEval, ()) {
    const FrnCase k = genFrnCase(*genFrnShape());
    k.frn->train(*rc::gen::arbitrary<bool>());
    checkLayerGradients([&](const Inputs& in) { return (*k.frn)(in[0]); },
                        {leaf(k.x), *k.frn->weight(), *k.frn->bias(), k.frn->tau()}, k.frn->describe());
}

RC_GTEST_PROP(FilterResponseNormProperties, OutputIsTheTluOfTheNormalizedInput, ()) {
    const FrnCase k = genFrnCase(*genFrnShape());
    const Array expected = xt::maximum(frnBeforeTlu(k.x, k.frn->weight()->value(), k.frn->bias()->value(), k.frn->eps()),
                                       xt::view(k.frn->tau().value(), xt::newaxis(), xt::all(), xt::newaxis(),
                                                xt::newaxis()));
    checkClose((*k.frn)(Var<double>(k.x)).value(), expected, 1e-12, "y");
}

// The smallest of genLargeFrnShape's streamed kind is past the caches in double, and its instances
// are cache blocks in the forward and the backward, which then stream their outputs; a change of
// the thresholds would otherwise stop checking that path unseen.
TEST(FrnShapes, TheLargestAreStreamed) {
    const xgrad::ChannelShape sh = xgrad::channel_shape(streamed_frn_shape);
    expectStreamedWalk<double>(xgrad::Grouping::per_sample(sh, sh.c));
}

// FRN's streamed passes every run, at two threads whatever the host has (the properties draw that
// shape rarely): the forward against the long-double reference, and forward and backward against
// each sample alone, whose tensors are not past the caches and not streamed (an instance's
// statistics and elementwise passes are its own; the parameters' gradients are the samples' sums).
TEST(FrnShapes, StreamedPassesMatchEachSampleAlone) {
    const Shape& shape = streamed_frn_shape;
    const xgrad::ChannelShape sample_view{1, shape[1], shape[2] * shape[3]};
    ASSERT_FALSE(xgrad::normalization_detail::streams(xgrad::Grouping::per_sample(sample_view, shape[1]).row_view(),
                                                      sizeof(double), xgrad::Rows::block(0, 1)));
    std::mt19937 rng(29);
    std::normal_distribution<double> normal(0.0, 1.0);
    const auto values = [&](const Shape& of, double mean, double spread) {
        Array a = Array::from_shape(of);
        for (auto& v : a) v = mean + spread * normal(rng);
        return a;
    };
    const Array x = values(shape, 0.5, 2.0), dy = values(shape, 0.0, 1.0);
    const Array weight = values({shape[1]}, 1.0, 0.5), bias = values({shape[1]}, 0.0, 0.5);
    const Array tau = values({shape[1]}, -0.5, 0.5);
    const auto run = [&](const Array& in, const Array& grad) {
        xgrad::FilterResponseNorm2d<double> frn(shape[1]);
        Var<double>(*frn.weight()).mutable_value() = weight;
        Var<double>(*frn.bias()).mutable_value() = bias;
        Var<double>(frn.tau()).mutable_value() = tau;
        Var<double> xv(in, true);
        std::vector<Array> out;
        tbb::task_arena(2).execute([&] {
            const Var<double> y = frn(xv);
            y.backward(grad);
            out = {y.value(), xv.grad(), frn.weight()->grad(), frn.bias()->grad(), frn.tau().grad()};
        });
        return out;
    };
    const std::vector<Array> whole = run(x, dy);
    const double eps = xgrad::FilterResponseNorm2d<double>(shape[1]).eps();
    const Array expected_y = xt::maximum(frnBeforeTlu(x, weight, bias, eps),
                                         xt::view(tau, xt::newaxis(), xt::all(), xt::newaxis(), xt::newaxis()));
    EXPECT_EQ(closeMismatch(whole[0], expected_y, 1e-12, "y"), "");
    std::vector<Array> sums{zerosOf({shape[1]}), zerosOf({shape[1]}), zerosOf({shape[1]})};
    for (std::size_t n = 0; n < shape[0]; ++n) {
        const auto sample = [&](const Array& a) { return Array(xt::view(a, xt::range(n, n + 1))); };
        const std::vector<Array> alone = run(sample(x), sample(dy));
        EXPECT_EQ(closeMismatch(sample(whole[0]), alone[0], 1e-12, "y of sample " + std::to_string(n)), "");
        EXPECT_EQ(closeMismatch(sample(whole[1]), alone[1], 1e-12, "dx of sample " + std::to_string(n)), "");
        for (std::size_t p = 0; p < 3; ++p) sums[p] += alone[2 + p];
    }
    const std::vector<std::string> names{"dweight", "dbias", "dtau"};
    for (std::size_t p = 0; p < 3; ++p) EXPECT_EQ(closeMismatch(whole[2 + p], sums[p], 1e-10, names[p]), "");
}

TEST(FilterResponseNormErrors, ShapesAndArguments) {
    xgrad::FilterResponseNorm2d<float> frn(4);
    const auto run = [&](const Shape& shape) {
        return error_of([&] { frn(Var<float>(xt::xarray<float>(xt::zeros<float>(shape)))); });
    };
    expectMentions(run({2, 4, 5}), {"FilterResponseNorm2d(4, eps=1e-06)", "(N, C, H, W)", "(2, 4, 5)"});
    expectMentions(run({2, 3, 5, 5}), {"FilterResponseNorm2d(4, eps=1e-06)", "C=4", "(2, 3, 5, 5)"});
    expectMentions(run({2, 4, 0, 5}), {"FilterResponseNorm2d(4, eps=1e-06)", "H·W >= 1", "(2, 4, 0, 5)"});
    EXPECT_EQ(frn(Var<float>(floatZerosOf({0, 4, 3, 3}))).shape(), (Shape{0, 4, 3, 3}));
    expectMentions(error_of([] { xgrad::FilterResponseNorm2d<float>(4, 0.0); }),
                   {"FilterResponseNorm2d", "eps > 0", "eps=0"});
    expectMentions(error_of([] { xgrad::FilterResponseNorm2d<float>(0); }), {"FilterResponseNorm2d", "num_features >= 1"});
}

// A parameter replaced with another shape is refused before the kernel reads it.
TEST(FilterResponseNormErrors, ReplacedParameters) {
    const Var<float> x(xt::xarray<float>(xt::ones<float>({2, 4, 3, 3})));
    for (const char* name : {"weight", "bias", "tau"}) {
        xgrad::FilterResponseNorm2d<float> frn(4);
        for (auto& [n, p] : frn.named_parameters()) {
            if (n == name) p.mutable_value() = xt::ones<float>({3});
        }
        EXPECT_EQ(error_of([&] { frn(x); }), "FilterResponseNorm2d(4, eps=1e-06): " + std::string(name) +
                                                 " has shape (3), expected (4)");
    }
}

TEST(FilterResponseNormState, ParametersAsTimmNamesThem) {
    xgrad::FilterResponseNorm2d<float> frn(3);
    std::vector<std::string> names;
    for (const auto& [name, p] : frn.named_parameters()) {
        names.push_back(name);
        EXPECT_EQ(p.shape(), (Shape{3}));
    }
    EXPECT_EQ(names, (std::vector<std::string>{"weight", "bias", "tau"}));
    EXPECT_TRUE(frn.named_buffers().empty());
    EXPECT_EQ(frn.weight()->value(), xt::ones<float>({3}));
    EXPECT_EQ(frn.tau().value(), xt::zeros<float>({3}));
}

// ---- Weight Standardization ----

// Weights (O, C_in, kh, kw) past the thresholds of statistics per filter: many filters of a few
// hundred values (cache-blocked), a few long filters, filters of 8 values (the rows layout).
rc::Gen<Shape> genLargeWeightShape() {
    return rc::gen::exec([] {
        const int kind = *uniformIn(0, 3);
        if (kind == 0) return Shape{dimIn(96, 160), dimIn(48, 64), 3, 3};
        if (kind == 1) return Shape{dimIn(4, 7), dimIn(2000, 3000), 3, 3};
        return Shape{dimIn(20000, 30000), 2, 2, 2};
    });
}

// Small weights of rank 2 to 4 with at least two values per filter; one draw in eight large.
rc::Gen<Shape> genWeightShape() {
    return rc::gen::exec([] {
        if (*uniformIn(0, 8) == 0) return *genLargeWeightShape();
        return *rc::gen::suchThat(genShape(2, 4), [](const Shape& s) { return xgrad::element_count(s) / s[0] >= 2; });
    });
}

// w_hat per filter, in long double.
Array standardized(const Array& w, double ws_eps) {
    const std::size_t filters = w.shape()[0];
    const std::size_t k = w.size() / filters;
    Array out = Array::from_shape(w.shape());
    for (std::size_t o = 0; o < filters; ++o) {
        long double sum = 0, sq = 0;
        for (std::size_t i = 0; i < k; ++i) sum += w.flat(o * k + i);
        const long double mean = sum / k;
        for (std::size_t i = 0; i < k; ++i) sq += (w.flat(o * k + i) - mean) * (w.flat(o * k + i) - mean);
        const long double invstd = 1.0L / std::sqrt(sq / k + ws_eps);
        for (std::size_t i = 0; i < k; ++i) out.flat(o * k + i) = static_cast<double>((w.flat(o * k + i) - mean) * invstd);
    }
    return out;
}

RC_GTEST_PROP(WeightStandardizationGradients, StandardizeWeight, ()) {
    const Shape shape = *genWeightShape();
    const double ws_eps = *rc::gen::element(1e-6, 1e-3);
    const Array w = isLarge(shape) ? *genBulkArray(shape, anywhere(-2, 2)) : *genDistinct(shape, 0.25);
    const Var<double> out = xgrad::standardize_weight(Var<double>(w), ws_eps);
    checkClose(out.value(), standardized(w, ws_eps), 1e-12, "w_hat");
    checkLayerGradients([&](const Inputs& in) { return xgrad::standardize_weight(in[0], ws_eps); }, {leaf(w)},
                        "standardize_weight");
}

// A small convolution: (N, C_in, H, W) input, out channels, kernel, stride, padding, bias.
struct ConvCase {
    Shape x;
    std::size_t out, kernel, stride, padding;
    bool bias;
};

rc::Gen<ConvCase> genConvCase() {
    return rc::gen::exec([] {
        ConvCase k{{dimIn(1, 2), dimIn(1, 3), dimIn(3, 5), dimIn(3, 5)}, dimIn(1, 3), dimIn(1, 3), dimIn(1, 2),
                   dimIn(0, 1), *rc::gen::arbitrary<bool>()};
        if (k.x[1] * k.kernel * k.kernel < 2) k.kernel = 2;
        return k;
    });
}

xgrad::Conv2d<double> makeConv(const ConvCase& k, bool standardize) {
    return xgrad::Conv2d<double>(k.x[1], k.out, k.kernel,
                                 {.stride = k.stride, .padding = k.padding, .bias = k.bias,
                                  .weight_standardization = standardize});
}

RC_GTEST_PROP(WeightStandardizationGradients, ConvolutionThroughTheStandardization, ()) {
    const ConvCase k = *genConvCase();
    auto conv = makeConv(k, true);
    conv.weight().mutable_value() = *genDistinct(xgrad::to_shape(conv.weight().value().shape()), 0.25);
    Inputs inputs{leaf(*genArray(k.x, anywhere(-2, 2))), conv.weight()};
    if (k.bias) inputs.push_back(*conv.bias());
    checkGradients([&](const Inputs& in) { return conv(in[0]); }, inputs, conv.describe());
}

RC_GTEST_PROP(WeightStandardizationProperties, IsTheConvolutionWithTheStandardizedWeight, ()) {
    const ConvCase k = *genConvCase();
    auto conv = makeConv(k, true);
    auto plain = makeConv(k, false);
    const Array w = *genDistinct(xgrad::to_shape(conv.weight().value().shape()), 0.25);
    conv.weight().mutable_value() = w;
    plain.weight().mutable_value() = standardized(w, 1e-6);
    if (k.bias) plain.bias()->mutable_value() = conv.bias()->value();
    const Array x = *genArray(k.x, anywhere(-2, 2));
    checkClose(conv(Var<double>(x)).value(), plain(Var<double>(x)).value(), 1e-12, "y");
    checkClose(conv.applied_weight().value(), plain.weight().value(), 1e-12, "applied weight");
}

TEST(WeightStandardization, FoldBatchNormFoldsTheStandardizedWeight) {
    xgrad::Conv2d<double> conv(3, 4, 3, {.padding = 1, .weight_standardization = true});
    xgrad::BatchNorm2d<double> bn(4);
    bn.eval();
    buffer(bn, "running_mean") = Array{0.5, -1.0, 2.0, 0.0};
    buffer(bn, "running_var") = Array{1.5, 0.5, 2.0, 1.0};
    setAffine(bn, Array{1.0, -0.5, 2.0, 0.25}, Array{0.0, 1.0, -1.0, 0.5});
    Array x = zerosOf({2, 3, 5, 5});
    for (std::size_t i = 0; i < x.size(); ++i) x.flat(i) = std::sin(static_cast<double>(i));
    const auto folded = xgrad::fold_batch_norm(conv, bn);
    EXPECT_FALSE(folded->weight_standardization_eps());
    const Array expected = bn(conv(Var<double>(x))).value();
    const Array actual = (*folded)(Var<double>(x)).value();
    ASSERT_EQ(actual.shape(), expected.shape());
    for (std::size_t i = 0; i < actual.size(); ++i) EXPECT_NEAR(actual.flat(i), expected.flat(i), 1e-12);
}

TEST(WeightStandardization, DescribeAndErrors) {
    const xgrad::Conv2d<float> conv(3, 8, 3, {.padding = 1, .weight_standardization = true});
    EXPECT_EQ(conv.describe(), "Conv2d(3, 8, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1), "
                               "weight_standardization=True, weight_standardization_eps=1e-06)");
    EXPECT_EQ(conv.weight_standardization_eps(), 1e-6);
    expectMentions(error_of([] { xgrad::Conv2d<float>(1, 4, 1, {.weight_standardization = true}); }),
                   {"Conv2d", "more than 1 weight per filter", "in_channels=1", "(1, 1)"});
    expectMentions(error_of([] { xgrad::standardize_weight(Var<float>(floatZerosOf({5}))); }),
                   {"standardize_weight", "(O, ...)", "(5)"});
    expectMentions(error_of([] { xgrad::standardize_weight(Var<float>(floatZerosOf({3, 0, 2}))); }),
                   {"standardize_weight", "(3, 0, 2)"});
}

// ---- one and two threads, on large shapes ----

template <class T>
xt::xarray<T> inType(const Array& a) {
    return xt::cast<T>(a);
}

template <class T>
void checkPerChannelLayersAcrossThreads(const Shape& shape, std::size_t vb) {
    const std::size_t channels = shape[1];
    const xt::xarray<T> x = inType<T>(*genValues(shape));
    const xt::xarray<T> dy = inType<T>(*genValues(shape));
    const xt::xarray<T> gamma = inType<T>(perChannelValues(channels, anywhere(-2, 2)));
    const xt::xarray<T> beta = inType<T>(perChannelValues(channels, anywhere(-2, 2)));
    const xt::xarray<T> running_mean = inType<T>(perChannelValues(channels, anywhere(-2, 2)));
    const xt::xarray<T> running_var = inType<T>(perChannelValues(channels, anywhere(0.25, 4)));
    const auto step = [&](BatchNorm<T>& layer) {
        setAffine(layer, gamma, beta);
        buffer(layer, "running_mean") = running_mean;
        buffer(layer, "running_var") = running_var;
        std::vector<xt::xarray<T>> out = trainingStep<T>(layer, x, dy);
        out.push_back(*layer.running_mean());
        out.push_back(*layer.running_var());
        layer.eval();
        for (const auto& a : trainingStep<T>(layer, x, dy)) out.push_back(a);
        return out;
    };
    checkSameBitsWithOneAndTwoThreads<T>(
        [&] { return step(*makeRenorm<T>(shape.size(), channels, {.schedule = fixedLimits(1.5, 0.5)})); },
        "BatchRenorm");
    checkSameBitsWithOneAndTwoThreads<T>([&] { return step(*makeGhost<T>(shape.size(), channels, vb)); },
                                         "GhostBatchNorm");
}

RC_GTEST_PROP(BatchNormFamilyThreads, PerChannelLayersGiveTheSameBits, ()) {
    const Shape shape = *genLargePerChannelShape(*uniformIn<std::size_t>(2, 5));
    const std::size_t vb = *genVirtualBatch(shape);
    checkPerChannelLayersAcrossThreads<double>(shape, vb);
    checkPerChannelLayersAcrossThreads<float>(shape, vb);
}

template <class T>
void checkFrnAndStandardizationAcrossThreads(const Shape& x_shape, const Shape& w_shape) {
    const FrnCase k = genFrnCase(x_shape);
    const xt::xarray<T> x = inType<T>(k.x);
    const xt::xarray<T> dy = inType<T>(*genValues(x_shape));
    checkSameBitsWithOneAndTwoThreads<T>(
        [&] {
            xgrad::FilterResponseNorm2d<T> frn(x_shape[1]);
            Var<T>(*frn.weight()).mutable_value() = inType<T>(k.frn->weight()->value());
            Var<T>(*frn.bias()).mutable_value() = inType<T>(k.frn->bias()->value());
            Var<T>(frn.tau()).mutable_value() = inType<T>(k.frn->tau().value());
            Var<T> xv(x, true);
            const Var<T> y = frn(xv);
            y.backward(dy);
            return std::vector<xt::xarray<T>>{y.value(), xv.grad(), frn.weight()->grad(), frn.bias()->grad(),
                                              frn.tau().grad()};
        },
        "FilterResponseNorm2d");
    const xt::xarray<T> w = inType<T>(*genBulkArray(w_shape, anywhere(-2, 2)));
    const xt::xarray<T> dw = inType<T>(*genBulkArray(w_shape, anywhere(-1, 1)));
    checkSameBitsWithOneAndTwoThreads<T>(
        [&] {
            Var<T> wv(w, true);
            const Var<T> out = xgrad::standardize_weight(wv);
            out.backward(dw);
            return std::vector<xt::xarray<T>>{out.value(), wv.grad()};
        },
        "standardize_weight");
}

RC_GTEST_PROP(BatchNormFamilyThreads, FilterResponseNormAndWeightStandardizationGiveTheSameBits, ()) {
    const Shape x_shape = *genLargeFrnShape();
    const Shape w_shape = *genLargeWeightShape();
    checkFrnAndStandardizationAcrossThreads<double>(x_shape, w_shape);
    checkFrnAndStandardizationAcrossThreads<float>(x_shape, w_shape);
}

}  // namespace
