// SyncBatchNorm across the ranks of the job this test runs in: one process (meson's plain run), or
// 2 and 3 ranks under mpirun (tests/meson.build). Every rank draws the same global batch from the
// same seed and takes its own share of the samples; the layer's results on each rank must be what
// one process's BatchNorm gives over the whole batch: outputs, dx, running statistics, and the sum
// over ranks of dγ and dβ. Shares are even, uneven and empty. Gradients against central differences
// of the projection summed over every rank, with rapidcheck drawing the same cases on every rank
// (tests/mpi_test_main.cpp). Every check's numbers are sums over ranks in rank order, the same bits
// everywhere, so that every rank reaches the same verdict and shrinks alike.
#include <gtest/gtest.h>
#include <rapidcheck/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include <xtensor/xview.hpp>

#include "layers/distributed/communicator.hpp"
#include "layers/normalization/batch_norm.hpp"
#include "layers/normalization/sync_batch_norm.hpp"
#include "tests/batch_norm_state.hpp"
#include "tests/error_message.hpp"
#include "tests/generators.hpp"
#include "tests/ranks.hpp"

namespace {

using xgrad::BatchNormOptions;
using xgrad::Communicator;
using xgrad::Shape;
using xgrad::Var;
using xgrad_test::buffer;
using xgrad_test::job;
using xgrad_test::ranks;
using xgrad_test::share_of;
using xgrad_test::shares;
using xgrad_test::setAffine;
using xgrad_test::this_rank;

// Values of channel c about a mean of its own (up to ±6) and a spread of its own, from `seed`.
template <class T>
xt::xarray<T> batch(const Shape& shape, std::uint32_t seed, bool centred = false) {
    std::mt19937 rng(seed);
    std::normal_distribution<double> normal(0.0, 1.0);
    xt::xarray<T> x = xt::xarray<T>::from_shape(shape);
    const std::size_t c = shape[1];
    std::vector<double> mean(c), spread(c);
    for (std::size_t k = 0; k < c; ++k) {
        mean[k] = centred ? 0.0 : 2.0 * normal(rng);
        spread[k] = 0.5 + std::abs(normal(rng));
    }
    const std::size_t inner = x.size() / std::max<std::size_t>(shape[0] * c, 1);
    for (std::size_t i = 0; i < x.size(); ++i) {
        const std::size_t k = (i / inner) % c;
        x.flat(i) = static_cast<T>(mean[k] + spread[k] * normal(rng));
    }
    return x;
}

// Sum over ranks, in rank order, of a local array of the same shape on every rank.
template <class T>
xt::xarray<T> summed_over_ranks(const xt::xarray<T>& local) {
    std::vector<double> v(local.begin(), local.end());
    xgrad::all_reduce_sum(job(), v);
    xt::xarray<T> out = xt::xarray<T>::from_shape(local.shape());
    std::copy(v.begin(), v.end(), out.begin());
    return out;
}

template <class T>
void expect_close(const xt::xarray<T>& actual, const xt::xarray<T>& expected, double tolerance, const std::string& what) {
    ASSERT_EQ(actual.shape(), expected.shape()) << what;
    double scale = 1.0, worst = 0.0;
    for (std::size_t i = 0; i < expected.size(); ++i) {
        scale = std::max(scale, std::abs(static_cast<double>(expected.flat(i))));
        worst = std::max(worst, std::abs(static_cast<double>(actual.flat(i)) - static_cast<double>(expected.flat(i))));
    }
    EXPECT_LE(worst, tolerance * scale) << what << " on " << job().describe();
}

template <class T>
bool bitwise_equal(const xt::xarray<T>& a, const xt::xarray<T>& b) {
    return a.shape() == b.shape() && std::equal(a.begin(), a.end(), b.begin());
}

// One training step: y, dx and the parameters' gradients (empty without affine parameters).
template <class T>
struct Step {
    xt::xarray<T> y, dx, dgamma, dbeta;
};

template <class T>
Step<T> training_step(xgrad::BatchNorm<T>& layer, const xt::xarray<T>& x, const xt::xarray<T>& dy) {
    layer.zero_grad();
    Var<T> xv(x, true);
    const Var<T> y = layer(xv);
    y.backward(dy);
    Step<T> s{y.value(), xv.grad(), {}, {}};
    if (layer.weight()) s.dgamma = layer.weight()->grad();
    if (layer.bias()) s.dbeta = layer.bias()->grad();
    return s;
}

// The layer, 1d or 2d (by the input's rank), fused with a ReLU or not, on `communicator`.
template <class T>
std::unique_ptr<xgrad::SyncBatchNorm<T>> make_sync(std::size_t input_rank, std::size_t channels, bool relu,
                                                   BatchNormOptions options,
                                                   std::shared_ptr<Communicator> communicator = xgrad::world()) {
    if (input_rank == 4) {
        if (relu) return std::make_unique<xgrad::SyncBatchNormReLU2d<T>>(channels, options, communicator);
        return std::make_unique<xgrad::SyncBatchNorm2d<T>>(channels, options, communicator);
    }
    if (relu) return std::make_unique<xgrad::SyncBatchNormReLU1d<T>>(channels, options, communicator);
    return std::make_unique<xgrad::SyncBatchNorm1d<T>>(channels, options, communicator);
}

template <class T>
std::unique_ptr<xgrad::BatchNorm<T>> make_local(std::size_t input_rank, std::size_t channels, bool relu,
                                                BatchNormOptions options) {
    if (input_rank == 4) {
        if (relu) return std::make_unique<xgrad::BatchNormReLU2d<T>>(channels, options);
        return std::make_unique<xgrad::BatchNorm2d<T>>(channels, options);
    }
    if (relu) return std::make_unique<xgrad::BatchNormReLU1d<T>>(channels, options);
    return std::make_unique<xgrad::BatchNorm1d<T>>(channels, options);
}

struct Case {
    Shape global;                    // (N, C, ...), N the sum of sizes
    std::vector<std::size_t> sizes;  // per rank
    bool relu = false;
    BatchNormOptions options = {};
};

// Two training steps of SyncBatchNorm on this rank's share against one process's BatchNorm on
// the whole batch, then an eval forward.
template <class T>
void check_against_whole_batch(const Case& c, double tolerance) {
    const std::size_t channels = c.global[1];
    const auto sync = make_sync<T>(c.global.size(), channels, c.relu, c.options);
    const auto whole = make_local<T>(c.global.size(), channels, c.relu, c.options);
    if (c.options.affine) {
        const xt::xarray<T> gamma = batch<T>({1, channels}, 7, true), beta = batch<T>({1, channels}, 8);
        setAffine(*sync, xt::xarray<T>(xt::flatten(gamma)), xt::xarray<T>(xt::flatten(beta)));
        setAffine(*whole, xt::xarray<T>(xt::flatten(gamma)), xt::xarray<T>(xt::flatten(beta)));
    }
    for (std::uint32_t step = 0; step < 2; ++step) {
        const xt::xarray<T> x = batch<T>(c.global, 100 + step), dy = batch<T>(c.global, 200 + step, true);
        const Step<T> expected = training_step(*whole, x, dy);
        const Step<T> got = training_step(*sync, share_of(x, c.sizes), share_of(dy, c.sizes));
        const std::string what = sync->describe() + " over " + xgrad::shape_str(c.global) + ", step " + std::to_string(step);
        expect_close(got.y, share_of(expected.y, c.sizes), tolerance, what + ": y");
        expect_close(got.dx, share_of(expected.dx, c.sizes), tolerance, what + ": dx");
        if (c.options.affine) {
            expect_close(summed_over_ranks(got.dgamma), expected.dgamma, tolerance, what + ": dgamma summed over ranks");
            expect_close(summed_over_ranks(got.dbeta), expected.dbeta, tolerance, what + ": dbeta summed over ranks");
        }
        if (c.options.track_running_stats) {
            expect_close(buffer(*sync, "running_mean"), buffer(*whole, "running_mean"), tolerance, what + ": running_mean");
            expect_close(buffer(*sync, "running_var"), buffer(*whole, "running_var"), tolerance, what + ": running_var");
            EXPECT_EQ(*sync->num_batches_tracked(), step + 1);
        }
    }
    if (c.options.track_running_stats) {  // eval normalizes each rank's share with the running statistics
        sync->eval();
        whole->eval();
        const xt::xarray<T> x = batch<T>(c.global, 300);
        expect_close((*sync)(Var<T>(share_of(x, c.sizes))).value(),
                     share_of((*whole)(Var<T>(x)).value(), c.sizes), tolerance, sync->describe() + ": eval");
    }
}

std::vector<Case> cases() {
    const std::size_t w = ranks();
    std::vector<Case> out;
    // The case: W local batches of 32 against one batch of 32·W, seed-cnn's first BN.
    out.push_back({{32 * w, 32, 7, 7}, shares(32 * w)});
    out.push_back({{32 * w, 32, 7, 7}, shares(32 * w), true});
    // Uneven shares, (N, C) and (N, C, L), no affine parameters, a cumulative average.
    out.push_back({{5 * w + 2, 6}, shares(5 * w + 2, 3), false, {.momentum = std::nullopt}});
    out.push_back({{3 * w + 1, 4, 5}, shares(3 * w + 1, 1), false, {.affine = false}});
    // An empty share, where there are ranks to spare: the others hold the batch.
    out.push_back({{4 * w, 3, 2, 3}, shares(4 * w, 0), true});
    out.push_back({{6, 5, 1}, shares(6, 0), false, {.momentum = 0.5}});
    // Without running statistics.
    out.push_back({{2 * w + 3, 4, 3, 2}, shares(2 * w + 3), false, {.track_running_stats = false}});
    // Past the reduction's thresholds: more than kSerialBelow values per rank (parallel sums), more
    // than kBlockElems per channel (several blocks, the over_blocks schedule), in the runs layout
    // and in the rows layout (S < 16).
    out.push_back({{8 * w, 16, 40, 40}, shares(8 * w, 5)});
    out.push_back({{8 * w, 4, 64, 64}, shares(8 * w, 3)});
    out.push_back({{5000 * w + 3, 16}, shares(5000 * w + 3, 7)});
    return out;
}

TEST(SyncBatchNorm, EveryRankGetsWhatOneProcessGetsForTheWholeBatchFloat) {
    for (const Case& c : cases()) check_against_whole_batch<float>(c, 2e-5);
}

TEST(SyncBatchNorm, EveryRankGetsWhatOneProcessGetsForTheWholeBatchDouble) {
    for (const Case& c : cases()) check_against_whole_batch<double>(c, 1e-12);
}

// With a job of one process the statistics are this process's own: BatchNorm's bits.
TEST(SyncBatchNorm, OneProcessIsBatchNormBitForBit) {
    for (const bool relu : {false, true}) {
        for (const Shape& shape : {Shape{12, 5, 3, 4}, Shape{9, 7}, Shape{16, 8, 60, 60}}) {
            const auto sync = make_sync<float>(shape.size(), shape[1], relu, {}, xgrad::single_process());
            const auto local = make_local<float>(shape.size(), shape[1], relu, {});
            const xt::xarray<float> x = batch<float>(shape, 11), dy = batch<float>(shape, 12, true);
            const Step<float> a = training_step(*sync, x, dy), b = training_step(*local, x, dy);
            EXPECT_TRUE(bitwise_equal(a.y, b.y) && bitwise_equal(a.dx, b.dx) && bitwise_equal(a.dgamma, b.dgamma) &&
                        bitwise_equal(a.dbeta, b.dbeta))
                << sync->describe() << " at " << xgrad::shape_str(shape);
            EXPECT_TRUE(bitwise_equal(buffer(*sync, "running_mean"), buffer(*local, "running_mean")) &&
                        bitwise_equal(buffer(*sync, "running_var"), buffer(*local, "running_var")));
        }
    }
}

// The running statistics are the same bits on every rank, whatever the shares.
TEST(SyncBatchNorm, RunningStatisticsAreTheSameBitsOnEveryRank) {
    const Shape global{3 * ranks() + 2, 6, 5};
    const auto sync = make_sync<double>(3, 6, false, {});
    const std::vector<std::size_t> sizes = shares(global[0], 1);
    (void)training_step(*sync, share_of(batch<double>(global, 21), sizes), share_of(batch<double>(global, 22), sizes));
    for (const char* name : {"running_mean", "running_var"}) {
        const xt::xarray<double>& mine = buffer(*sync, name);
        std::vector<double> every(ranks() * mine.size());
        job().all_gather(std::vector<double>(mine.begin(), mine.end()), every);
        for (std::size_t r = 1; r < ranks(); ++r) {
            EXPECT_TRUE(std::equal(mine.begin(), mine.end(), every.begin() + static_cast<std::ptrdiff_t>(r * mine.size())))
                << name << " of rank " << r << " differs from rank 0's";
        }
    }
}

TEST(SyncBatchNormErrors, RanksThatDisagreeOnTheSpatialSizeAreRefusedOnEveryRank) {
    if (ranks() == 1) GTEST_SKIP() << "needs two ranks";
    const auto sync = make_sync<float>(3, 3, false, {});
    const xt::xarray<float> x = batch<float>({2, 3, 2 + this_rank()}, 1);
    const std::string message = xgrad_test::error_of<xgrad::ShapeError>([&] { (void)(*sync)(Var<float>(x)); });
    EXPECT_NE(message.find("SyncBatchNorm1d(3"), std::string::npos) << message;
    EXPECT_NE(message.find("ranks disagree on the input's spatial size: rank 0 has (N, C, S) = (2, 3, 2), rank 1 has (2, 3, 3)"),
              std::string::npos)
        << message;
    EXPECT_EQ(*sync->num_batches_tracked(), 0);
}

// A rank whose input does not fit refuses it, and the others do too, rather than wait for it.
TEST(SyncBatchNormErrors, AnInputOneRankRefusesIsRefusedOnEveryRank) {
    if (ranks() == 1) GTEST_SKIP() << "needs two ranks";
    const auto sync = make_sync<float>(4, 3, false, {});
    const xt::xarray<float> x = batch<float>({2, this_rank() == 1 ? std::size_t{4} : std::size_t{3}, 2, 2}, 1);
    const std::string message = xgrad_test::error_of<xgrad::ShapeError>([&] { (void)(*sync)(Var<float>(x)); });
    const std::string expected = this_rank() == 1 ? "expected C=3 channels, got input (2, 4, 2, 2)"
                                                  : "SyncBatchNorm2d(3, eps=1e-05, momentum=0.1, affine=True, "
                                                    "track_running_stats=True): rank 1 of " + std::to_string(ranks()) +
                                                        " refused its input";
    EXPECT_NE(message.find(expected), std::string::npos) << message;
    // Every rank goes on to the same next collective: a forward that fits everywhere works.
    EXPECT_NO_THROW((void)(*sync)(Var<float>(batch<float>({2, 3, 2, 2}, 2))));
}

TEST(SyncBatchNormErrors, AGlobalBatchOfOneValuePerChannelIsRefusedOnEveryRank) {
    const auto sync = make_sync<float>(2, 4, false, {});
    const std::vector<std::size_t> sizes = shares(1, 1);
    const xt::xarray<float> x = share_of(batch<float>({1, 4}, 1), sizes);
    const std::string message = xgrad_test::error_of<xgrad::ShapeError>([&] { (void)(*sync)(Var<float>(x)); });
    EXPECT_NE(message.find("expected more than 1 value per channel over the " + std::to_string(ranks()) +
                           " ranks' batches in training, got 1"),
              std::string::npos)
        << message;
}

// ---- against central differences, across ranks ----

// Σ over ranks of Σ w·f(x) on this rank.
double projected_over_ranks(const xt::xarray<double>& y, const xt::xarray<double>& w) {
    std::vector<double> s{xt::sum(y * w)()};
    xgrad::all_reduce_sum(job(), s);
    return s[0];
}

// Shapes of a few values per rank, and now and then (1 in 10) of more than kSerialBelow values per
// rank (2·16·46·46 at least), where the statistics and the backward sums run in parallel.
RC_GTEST_PROP(SyncBatchNormGradients, MatchCentralDifferencesOfTheProjectionOverRanks, ()) {
    const bool large = *rc::gen::weightedElement<bool>({{9, false}, {1, true}});
    const std::size_t channels = large ? 16 : *xgrad_test::uniformIn<std::size_t>(1, 5);
    const std::size_t rank = large ? 4 : *rc::gen::element<std::size_t>(2, 3, 4);
    Shape global{0, channels};
    for (std::size_t d = 2; d < rank; ++d) {
        global.push_back(large ? *xgrad_test::uniformIn<std::size_t>(46, 61) : *xgrad_test::uniformIn<std::size_t>(1, 4));
    }
    std::vector<std::size_t> sizes;
    for (std::size_t r = 0; r < ranks(); ++r) sizes.push_back(*xgrad_test::uniformIn<std::size_t>(large ? 2 : 0, 4));
    for (const std::size_t n : sizes) global[0] += n;
    std::size_t per_channel = global[0];
    for (std::size_t d = 2; d < rank; ++d) per_channel *= global[d];
    RC_PRE(per_channel >= 2);
    // Not past the thresholds: among so many outputs some lie within a step of the ReLU's kink.
    const bool relu = !large && *rc::gen::arbitrary<bool>();
    const std::uint32_t seed = *rc::gen::arbitrary<std::uint32_t>();

    const auto sync = make_sync<double>(rank, channels, relu, {});
    const xt::xarray<double> gamma = batch<double>({1, channels}, seed + 1), beta = batch<double>({1, channels}, seed + 2);
    setAffine(*sync, xt::xarray<double>(xt::flatten(gamma)), xt::xarray<double>(xt::flatten(beta)));
    const xt::xarray<double> x = share_of(batch<double>(global, seed), sizes);
    const xt::xarray<double> w = share_of(batch<double>(global, seed + 3, true), sizes);
    const xt::xarray<double> vx = share_of(batch<double>(global, seed + 4, true), sizes);
    const xt::xarray<double> vg = xt::flatten(batch<double>({1, channels}, seed + 5, true));
    const xt::xarray<double> vb = xt::flatten(batch<double>({1, channels}, seed + 6, true));

    const Step<double> s = training_step(*sync, x, w);
    if (relu) {  // a central difference across the ReLU's kink is no derivative: no output near it
        const auto plain = make_sync<double>(rank, channels, false, {});
        setAffine(*plain, xt::xarray<double>(xt::flatten(gamma)), xt::xarray<double>(xt::flatten(beta)));
        const xt::xarray<double> z = (*plain)(Var<double>(x)).value();
        std::vector<double> near{z.size() > 0 && xt::amin(xt::abs(z))() < 1e-4 ? 1.0 : 0.0};
        xgrad::all_reduce_sum(job(), near);
        RC_PRE(near[0] == 0.0);
    }
    // <gradient, direction>: dx is this rank's; dγ and dβ are shares whose sum is the gradient.
    std::vector<double> analytic{xt::sum(s.dx * vx)() + xt::sum(s.dgamma * vg)() + xt::sum(s.dbeta * vb)()};
    xgrad::all_reduce_sum(job(), analytic);
    const double h = 1e-6;
    const auto at = [&](double t) {
        setAffine(*sync, xt::xarray<double>(xt::flatten(gamma) + t * vg), xt::xarray<double>(xt::flatten(beta) + t * vb));
        return projected_over_ranks((*sync)(Var<double>(x + t * vx)).value(), w);
    };
    const double numeric = (at(h) - at(-h)) / (2.0 * h);
    const double error = std::abs(analytic[0] - numeric) / std::max({1.0, std::abs(analytic[0]), std::abs(numeric)});
    RC_ASSERT(error <= 1e-6);
}

}  // namespace
