// The per-channel reduction and the two stages built on it for a per-channel grouping (the
// statistics, and the backward sums Σdy and Σdy·(x - mean)): sums against a naive double reference
// over many (N, C, S) shapes, float and double; bitwise equal results whatever the thread count and
// schedule; and the variance of float data with a large mean, and with an outlier first.
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <random>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include <tbb/global_control.h>
#include <tbb/task_arena.h>

#include "layers/normalization/backward_sums.hpp"
#include "layers/normalization/channel_reduce.hpp"
#include "layers/normalization/epilogue.hpp"
#include "layers/normalization/statistics.hpp"

namespace {

using xgrad::ChannelLayout;
using xgrad::ChannelSchedule;
using xgrad::ChannelShape;

std::string name(const ChannelShape& sh) {
    return "(N, C, S) = (" + std::to_string(sh.n) + ", " + std::to_string(sh.c) + ", " + std::to_string(sh.s) + ")";
}

template <class T>
std::vector<T> random_data(std::size_t count, double center, double spread, unsigned seed) {
    std::mt19937_64 rng(seed);
    std::normal_distribution<double> dist(center, spread);
    std::vector<T> v(count);
    for (auto& x : v) x = static_cast<T>(dist(rng));
    return v;
}

// The naive reference: every channel's elements visited in (n, s) order, in long double.
template <class T>
std::vector<long double> ref_sum(const std::vector<T>& x, const ChannelShape& sh) {
    std::vector<long double> out(sh.c, 0.0L);
    for (std::size_t n = 0; n < sh.n; ++n)
        for (std::size_t c = 0; c < sh.c; ++c)
            for (std::size_t s = 0; s < sh.s; ++s) out[c] += x[(n * sh.c + c) * sh.s + s];
    return out;
}

template <class T>
std::vector<long double> ref_sq(const std::vector<T>& x, const ChannelShape& sh, const std::vector<long double>& mean) {
    std::vector<long double> out(sh.c, 0.0L);
    for (std::size_t n = 0; n < sh.n; ++n)
        for (std::size_t c = 0; c < sh.c; ++c)
            for (std::size_t s = 0; s < sh.s; ++s) {
                const long double d = x[(n * sh.c + c) * sh.s + s] - mean[c];
                out[c] += d * d;
            }
    return out;
}

const std::vector<ChannelShape> accuracy_shapes = {
    {1, 1, 1},      {2, 3, 1},       {7, 5, 1},      {1, 64, 1},      {1000, 3, 1},    {40000, 2, 1},
    {3, 3000, 1},   {128, 100, 1},   {200, 1500, 1}, {4, 3, 5},       {300, 7, 3},     {8, 4, 15},
    {20000, 3, 2},  {2, 700, 7},     {8, 16, 16},    {2, 1, 17},      {5, 3, 31},      {1, 1, 100000},
    {33, 1, 40000}, {16, 70, 33},    {3, 2, 16385},  {1, 5, 20000},   {16, 32, 196},   {64, 8, 784},
    {1, 1, 16},     {1, 3000, 64},   {17, 2, 1000},  {4, 1, 1},
};

// Stage 1 over a per-channel grouping: the mean and the biased variance.
template <class T>
xgrad::Moments channel_moments(const T* x, const ChannelShape& sh) {
    return xgrad::batch_moments(xgrad::Grouping::per_channel(sh), x);
}

// Stage 4's sums without an epilogue: {Σdy, Σdy·(x - mean)} per channel.
template <class T>
std::vector<std::array<double, 2>> channel_sum_and_centered_dot(const T* dy, const T* x, const ChannelShape& sh,
                                                                const std::vector<double>& mean) {
    std::vector<std::array<double, 2>> out(sh.c);
    xgrad::backward_sums<T>(sh, std::span<const double>(mean), nullptr, xgrad::NoEpilogue{}, dy, x,
                            xgrad::Rows::all(sh.c), std::span(out));
    return out;
}

template <class T>
void check_against_reference(const ChannelShape& sh, unsigned seed) {
    SCOPED_TRACE(name(sh));
    const auto x = random_data<T>(sh.size(), 0.5, 2.0, seed);
    const auto dy = random_data<T>(sh.size(), -0.25, 1.0, seed + 1);
    const auto sum = ref_sum(x, sh);
    const double count = static_cast<double>(sh.per_channel());

    const auto [mean, var] = channel_moments(x.data(), sh);
    const auto got_sum = xgrad::channel_sum(x.data(), sh);
    ASSERT_EQ(mean.size(), sh.c);
    std::vector<long double> ref_mean(sh.c);
    for (std::size_t c = 0; c < sh.c; ++c) ref_mean[c] = sum[c] / count;
    const auto ref_sq_sum = ref_sq(x, sh, ref_mean);
    const auto both = channel_sum_and_centered_dot(dy.data(), x.data(), sh, mean);
    const auto dy_sum = ref_sum(dy, sh);

    // Every sum is compared with a bound proportional to the sum of the magnitudes of its terms.
    std::vector<long double> x_abs(sh.c, 0.0L), dy_abs(sh.c, 0.0L), dot_ref(sh.c, 0.0L), dot_abs(sh.c, 0.0L);
    for (std::size_t n = 0; n < sh.n; ++n)
        for (std::size_t c = 0; c < sh.c; ++c)
            for (std::size_t s = 0; s < sh.s; ++s) {
                const std::size_t i = (n * sh.c + c) * sh.s + s;
                x_abs[c] += std::fabs(static_cast<long double>(x[i]));
                dy_abs[c] += std::fabs(static_cast<long double>(dy[i]));
                const long double t = static_cast<long double>(dy[i]) * (x[i] - ref_mean[c]);
                dot_ref[c] += t;
                dot_abs[c] += std::fabs(t);
            }
    const double rel = 1e-13;
    for (std::size_t c = 0; c < sh.c; ++c) {
        EXPECT_NEAR(got_sum[c], static_cast<double>(sum[c]), rel * static_cast<double>(x_abs[c])) << "c = " << c;
        EXPECT_NEAR(mean[c], static_cast<double>(ref_mean[c]), rel * static_cast<double>(x_abs[c]) / count);
        EXPECT_NEAR(var[c] * count, static_cast<double>(ref_sq_sum[c]), rel * static_cast<double>(ref_sq_sum[c]) + 1e-300);
        EXPECT_NEAR(both[c][0], static_cast<double>(dy_sum[c]), rel * static_cast<double>(dy_abs[c]));
        EXPECT_NEAR(both[c][1], static_cast<double>(dot_ref[c]), rel * static_cast<double>(dot_abs[c]));
    }
}

TEST(ChannelReduce, MatchesNaiveReferenceFloat) {
    unsigned seed = 1;
    for (const auto& sh : accuracy_shapes) check_against_reference<float>(sh, seed += 2);
}

TEST(ChannelReduce, MatchesNaiveReferenceDouble) {
    unsigned seed = 1001;
    for (const auto& sh : accuracy_shapes) check_against_reference<double>(sh, seed += 2);
}

TEST(ChannelReduce, MatchesReferenceUnderEverySchedule) {
    for (const auto& sh : accuracy_shapes) {
        SCOPED_TRACE(name(sh));
        const auto x = random_data<double>(sh.size(), 1.0, 3.0, 77);
        const auto sum = ref_sum(x, sh);
        const auto term = [&x](std::size_t, std::size_t i) { return std::array<double, 1>{x[i]}; };
        for (auto schedule : {ChannelSchedule::serial, ChannelSchedule::over_channels, ChannelSchedule::over_blocks}) {
            const auto got = xgrad::channel_sums<1>(sh, term, schedule);
            for (std::size_t c = 0; c < sh.c; ++c) {
                EXPECT_NEAR(got[c][0], static_cast<double>(sum[c]), 1e-12 * (1.0 + std::fabs(static_cast<double>(sum[c]))));
            }
        }
    }
}

// How a test term gives its quantities: as sums, or as products (xgrad::Products), which the runs
// layout adds with fused multiply-adds.
enum class TermForm { sums, products };

// A term whose rounding depends on the order of additions and that invites fused multiply-adds,
// so that any difference in how the sums are formed shows in the bits: {(x - 0.1c)², dy·(x - 0.1c)}.
template <TermForm Form, class T>
auto dot_term(const T* g, const T* v) {
    return [g, v](std::size_t c, std::size_t i) {
        const double d = static_cast<double>(v[i]) - 0.1 * static_cast<double>(c);
        if constexpr (Form == TermForm::products) {
            return xgrad::Products<2>{{d, static_cast<double>(g[i])}, {d, d}};
        } else {
            return std::array<double, 2>{d * d, static_cast<double>(g[i]) * d};
        }
    };
}

template <class T, TermForm Form = TermForm::sums>
std::vector<std::array<double, 2>> dot_sums(const std::vector<T>& dy, const std::vector<T>& x, const ChannelShape& sh,
                                            ChannelSchedule schedule = ChannelSchedule::automatic) {
    return xgrad::channel_sums<2>(sh, dot_term<Form>(dy.data(), x.data()), schedule);
}

template <class R>
bool bitwise_equal(const R& a, const R& b) {
    return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(a[0])) == 0;
}

struct BranchCase {
    ChannelShape shape;
    ChannelLayout layout;
    ChannelSchedule with_two_threads;
};

// One shape per branch that two threads take.
const std::vector<BranchCase> branch_cases = {
    {{4, 3, 5}, ChannelLayout::rows, ChannelSchedule::serial},                // tiny
    {{300, 5, 40}, ChannelLayout::runs, ChannelSchedule::serial},             // below the task threshold
    {{16, 32, 784}, ChannelLayout::runs, ChannelSchedule::over_channels},     // many channels, several blocks each
    {{2, 3000, 64}, ChannelLayout::runs, ChannelSchedule::over_channels},     // one block per channel
    {{100, 2000, 1}, ChannelLayout::rows, ChannelSchedule::over_channels},    // (N, C), one block of rows
    {{8, 2, 100003}, ChannelLayout::runs, ChannelSchedule::over_blocks},      // few channels, long runs
    {{1, 1, 300001}, ChannelLayout::runs, ChannelSchedule::over_blocks},      // one channel, one row
    {{100003, 3, 1}, ChannelLayout::rows, ChannelSchedule::over_blocks},      // (N, C), few channels
    {{30001, 100, 1}, ChannelLayout::rows, ChannelSchedule::over_blocks},     // (N, C), many rows
    {{30001, 5, 3}, ChannelLayout::rows, ChannelSchedule::over_blocks},       // (N, C, L), short L
    {{20001, 70, 7}, ChannelLayout::rows, ChannelSchedule::over_blocks},      // (N, C, L), wide rows
    {{20001, 10, 7}, ChannelLayout::rows, ChannelSchedule::over_blocks},      // (N, C, L), rows in register tiles
};

TEST(ChannelReduce, SchedulesCoverEveryBranch) {
    for (const auto& bc : branch_cases) {
        SCOPED_TRACE(name(bc.shape));
        EXPECT_EQ(xgrad::channel_partition(bc.shape).layout, bc.layout);
        EXPECT_EQ(xgrad::channel_schedule(bc.shape, 2), bc.with_two_threads);
        EXPECT_EQ(xgrad::channel_schedule(bc.shape, 1), ChannelSchedule::serial);
    }
}

template <class T, TermForm Form>
void check_thread_independence() {
    for (const auto& bc : branch_cases) {
        const auto& sh = bc.shape;
        SCOPED_TRACE(name(sh));
        const auto x = random_data<T>(sh.size(), 3.0, 7.0, 5);
        const auto dy = random_data<T>(sh.size(), 0.0, 1.0, 6);
        std::vector<std::array<double, 2>> one, two, two_again, limited;
        xgrad::Moments moments1, moments2;
        tbb::task_arena(1).execute([&] {
            EXPECT_EQ(xgrad::available_threads(), 1);
            one = dot_sums<T, Form>(dy, x, sh);
            moments1 = channel_moments(x.data(), sh);
        });
        tbb::task_arena(2).execute([&] {
            EXPECT_EQ(xgrad::available_threads(), 2);
            two = dot_sums<T, Form>(dy, x, sh);
            two_again = dot_sums<T, Form>(dy, x, sh);
            moments2 = channel_moments(x.data(), sh);
        });
        {
            tbb::global_control limit(tbb::global_control::max_allowed_parallelism, 1);
            EXPECT_EQ(xgrad::available_threads(), 1);
            limited = dot_sums<T, Form>(dy, x, sh);
        }
        EXPECT_TRUE(bitwise_equal(one, two));
        EXPECT_TRUE(bitwise_equal(two, two_again));
        EXPECT_TRUE(bitwise_equal(one, limited));
        EXPECT_TRUE(bitwise_equal(moments1.mean, moments2.mean));
        EXPECT_TRUE(bitwise_equal(moments1.var, moments2.var));
        // Every schedule, whatever the arena, gives the same bits.
        tbb::task_arena(2).execute([&] {
            for (auto schedule : {ChannelSchedule::serial, ChannelSchedule::over_channels, ChannelSchedule::over_blocks}) {
                EXPECT_TRUE(bitwise_equal(one, dot_sums<T, Form>(dy, x, sh, schedule))) << "schedule " << static_cast<int>(schedule);
            }
        });
    }
}

TEST(ChannelReduce, OneAndTwoThreadsAreBitwiseEqualFloat) { check_thread_independence<float, TermForm::sums>(); }
TEST(ChannelReduce, OneAndTwoThreadsAreBitwiseEqualDouble) { check_thread_independence<double, TermForm::sums>(); }
TEST(ChannelReduce, OneAndTwoThreadsAreBitwiseEqualWithProductTermsFloat) {
    check_thread_independence<float, TermForm::products>();
}
TEST(ChannelReduce, OneAndTwoThreadsAreBitwiseEqualWithProductTermsDouble) {
    check_thread_independence<double, TermForm::products>();
}

// A product term sums what the same term as sums does, to the rounding of sums of its magnitudes
// (Σdy·d cancels: dy has mean 0).
TEST(ChannelReduce, ProductTermsSumAsTheirSumsDo) {
    for (const auto& bc : branch_cases) {
        const auto& sh = bc.shape;
        SCOPED_TRACE(name(sh));
        const auto x = random_data<double>(sh.size(), 3.0, 7.0, 5);
        const auto dy = random_data<double>(sh.size(), 0.0, 1.0, 6);
        const auto sums = dot_sums<double, TermForm::sums>(dy, x, sh);
        const auto products = dot_sums<double, TermForm::products>(dy, x, sh);
        const auto magnitudes = xgrad::channel_sums<2>(sh, [&](std::size_t c, std::size_t i) {
            const auto t = dot_term<TermForm::sums>(dy.data(), x.data())(c, i);
            return std::array<double, 2>{std::fabs(t[0]), std::fabs(t[1])};
        });
        for (std::size_t c = 0; c < sh.c; ++c) {
            for (std::size_t k = 0; k < 2; ++k) EXPECT_NEAR(products[c][k], sums[c][k], 1e-11 * magnitudes[c][k]);
        }
    }
}

// The runs layout's order of additions as channel_reduce.hpp states it, written out channel by
// channel: a block's elements in (n, s) order, element r of a run into lane r % kLanes (a product
// by a multiply-add), the lanes pairwise, the blocks' partials in order.
template <TermForm Form>
std::vector<std::array<double, 2>> documented_runs_order(const std::vector<double>& dy, const std::vector<double>& x,
                                                         const ChannelShape& sh) {
    constexpr std::size_t lanes_count = xgrad::channel_detail::kLanes, block_elems = 1 << 14;
#if defined(__AVX512F__)
    static_assert(lanes_count == 32);
#else
    static_assert(lanes_count == 16);
#endif
    const std::size_t block = sh.s <= block_elems ? sh.s * (block_elems / sh.s) : block_elems;
    const auto term = dot_term<Form>(dy.data(), x.data());
    std::vector<std::array<double, 2>> out(sh.c, std::array<double, 2>{});
    for (std::size_t c = 0; c < sh.c; ++c) {
        for (std::size_t j0 = 0; j0 < sh.per_channel(); j0 += block) {
            double lanes[2][lanes_count] = {};
            for (std::size_t j = j0; j < std::min(sh.per_channel(), j0 + block);) {
                const std::size_t len = std::min(sh.s - j % sh.s, std::min(sh.per_channel(), j0 + block) - j);
                for (std::size_t r = 0; r < len; ++r) {
                    const auto t = term(c, (j / sh.s * sh.c + c) * sh.s + j % sh.s + r);
                    for (std::size_t k = 0; k < 2; ++k) {
                        double& lane = lanes[k][r % lanes_count];
                        if constexpr (Form == TermForm::products) {
                            lane = xgrad::normalization_detail::mul_add(t.value[k], t.factor[k], lane);
                        } else {
                            lane += t[k];
                        }
                    }
                }
                j += len;
            }
            for (std::size_t k = 0; k < 2; ++k) {
                for (std::size_t w = lanes_count / 2; w > 0; w /= 2) {
                    for (std::size_t l = 0; l < w; ++l) lanes[k][l] += lanes[k][l + w];
                }
                out[c][k] += lanes[k][0];
            }
        }
    }
    return out;
}

template <TermForm Form>
void check_runs_layout_order() {
    for (const ChannelShape sh : {ChannelShape{64, 3, 784}, ChannelShape{9, 70, 49}, ChannelShape{5, 130, 16},
                                  ChannelShape{3, 2, 20001}, ChannelShape{21, 4, 800}, ChannelShape{2, 5, 16383},
                                  // one run a channel (the views of GroupNorm, LayerNorm and InstanceNorm):
                                  // runs of whole vectors of lanes, with a tail of each length class, of
                                  // a tail only (31 with 32 lanes, a block's last 12 with 16), cut by
                                  // blocks, and of at most 8 or 16 elements, summed in that many lanes
                                  // (16 with 32 lanes; a block's last 6, 8 and 12)
                                  ChannelShape{1, 70, 49}, ChannelShape{1, 9, 64}, ChannelShape{1, 40, 16},
                                  ChannelShape{1, 20, 40}, ChannelShape{1, 12, 31}, ChannelShape{1, 5, 100},
                                  ChannelShape{1, 3, 20001}, ChannelShape{1, 2, 16383}, ChannelShape{1, 2, 16390},
                                  ChannelShape{1, 2, 16392}, ChannelShape{1, 2, 16396}}) {
        SCOPED_TRACE(name(sh));
        ASSERT_EQ(xgrad::channel_partition(sh).layout, ChannelLayout::runs);
        const auto x = random_data<double>(sh.size(), 3.0, 7.0, 21);
        const auto dy = random_data<double>(sh.size(), 0.0, 1.0, 22);
        const auto expected = documented_runs_order<Form>(dy, x, sh);
        const auto term = dot_term<Form>(dy.data(), x.data());
        for (auto schedule : {ChannelSchedule::serial, ChannelSchedule::over_channels, ChannelSchedule::over_blocks}) {
            EXPECT_TRUE(bitwise_equal(expected, xgrad::channel_sums<2>(sh, term, schedule))) << "schedule " << static_cast<int>(schedule);
            EXPECT_TRUE(bitwise_equal(expected, xgrad::channel_sums<2>(sh, xgrad::read_ahead(term, sh.size(), x.data()), schedule)))
                << "reading ahead, schedule " << static_cast<int>(schedule);
        }
    }
}

// Whatever the walk (row by row over blocks of whole rows, up to 32 or 64 channels at a time here;
// channel by channel where blocks cut runs, or where the term reads ahead; a channel's one run with
// its lanes in registers), every schedule adds in the documented order, bit for bit.
TEST(ChannelReduce, RunsLayoutAddsInTheDocumentedOrder) { check_runs_layout_order<TermForm::sums>(); }
TEST(ChannelReduce, RunsLayoutAddsProductsInTheDocumentedOrder) { check_runs_layout_order<TermForm::products>(); }

// Channel blocks summed one by one in the caller's thread give the bits of the whole-tensor sums.
TEST(ChannelReduce, SerialSumsOfChannelBlocksAreBitwiseEqual) {
    for (const auto& bc : branch_cases) {
        const auto& sh = bc.shape;
        SCOPED_TRACE(name(sh));
        const auto x = random_data<float>(sh.size(), 3.0, 7.0, 5);
        const auto dy = random_data<float>(sh.size(), 0.0, 1.0, 6);
        const auto blocks_of = [&](const auto& term) {
            std::vector<std::array<double, 2>> blocks(sh.c, std::array<double, 2>{});
            const std::size_t step = sh.c / 3 + 1;
            for (std::size_t c0 = 0; c0 < sh.c; c0 += step) {
                xgrad::channel_sums_serial<2>(sh, c0, std::min(sh.c, c0 + step), term, blocks.data() + c0);
            }
            return blocks;
        };
        EXPECT_TRUE(bitwise_equal(dot_sums(dy, x, sh), blocks_of(dot_term<TermForm::sums>(dy.data(), x.data()))));
        EXPECT_TRUE(bitwise_equal(dot_sums<float, TermForm::products>(dy, x, sh),
                                  blocks_of(dot_term<TermForm::products>(dy.data(), x.data()))));
    }
}

// A term that reads ahead (read_ahead: the runs layout asks for a channel's next run before its
// turn, walking channel by channel) sums the bits the bare term sums (walking a block of whole rows
// row by row): over every branch, runs longer and shorter than the distance read ahead, one sample
// (nothing after it), float and double, products, and a term that takes n.
template <class T>
void check_reading_ahead_changes_no_bit() {
    std::vector<ChannelShape> shapes;
    for (const auto& bc : branch_cases) shapes.push_back(bc.shape);
    for (const ChannelShape sh : {ChannelShape{5, 3, 3000}, ChannelShape{7, 4, 1024}, ChannelShape{6, 2, 515},
                                  ChannelShape{1, 3, 5000}, ChannelShape{9, 5, 33}}) {
        shapes.push_back(sh);
    }
    for (const auto& sh : shapes) {
        SCOPED_TRACE(name(sh));
        const auto x = random_data<T>(sh.size(), 3.0, 7.0, 5);
        const auto dy = random_data<T>(sh.size(), 0.0, 1.0, 6);
        const auto products = dot_term<TermForm::products>(dy.data(), x.data());
        const auto sums = dot_term<TermForm::sums>(dy.data(), x.data());
        const auto with_sample = [&](std::size_t c, std::size_t n, std::size_t i) {
            return std::array<double, 2>{static_cast<double>(x[i]) * static_cast<double>(n % 3 + c),
                                         static_cast<double>(dy[i])};
        };
        EXPECT_TRUE(bitwise_equal(xgrad::channel_sums<2>(sh, products),
                                  xgrad::channel_sums<2>(sh, xgrad::read_ahead(products, sh.size(), dy.data(), x.data()))));
        EXPECT_TRUE(bitwise_equal(xgrad::channel_sums<2>(sh, sums),
                                  xgrad::channel_sums<2>(sh, xgrad::read_ahead(sums, sh.size(), x.data()))));
        EXPECT_TRUE(bitwise_equal(xgrad::channel_sums<2>(sh, with_sample),
                                  xgrad::channel_sums<2>(sh, xgrad::read_ahead(with_sample, sh.size(), x.data()))));
    }
}
TEST(ChannelReduce, ReadingAheadChangesNoBitFloat) { check_reading_ahead_changes_no_bit<float>(); }
TEST(ChannelReduce, ReadingAheadChangesNoBitDouble) { check_reading_ahead_changes_no_bit<double>(); }

// What a term reading ahead asks for: lines of the channel it is summing (a request comes just
// before that channel's next term), each request within one run of the tensor, none within the run
// being summed unless it reads ahead within runs, and every run but a channel's first asked for
// before its turn. A short distance reaches every branch at small
// shapes: ahead within a run, past its end into the next run (from runs longer and shorter than
// the distance, whole or cut by a block; runs shorter than the 32 lanes of an AVX-512 build),
// none after the last sample.
struct RecordingTerm {
    static constexpr std::size_t distance = 40;
    bool within_runs = true;
    const ChannelShape* shape;
    std::vector<std::pair<std::size_t, std::size_t>>* requests;
    std::size_t* checked;  // requests whose channel was checked

    std::array<double, 1> operator()(std::size_t c, std::size_t i) const {
        for (; *checked < requests->size(); ++*checked) {
            const std::size_t run = (*requests)[*checked].first / shape->s;
            EXPECT_EQ(run % shape->c, c) << "request " << *checked;
            if (!within_runs) {
                EXPECT_NE(run, i / shape->s) << "request " << *checked << " within the run";
            }
        }
        return {1.0};
    }
    void prefetch(std::size_t i, std::size_t count) const { requests->emplace_back(i, count); }
};

TEST(ChannelReduce, ReadingAheadAsksForTheChannelsOwnRunsAhead) {
    static_assert(xgrad::ReadsAhead<RecordingTerm>);
    for (const ChannelShape sh : {ChannelShape{5, 3, 300}, ChannelShape{4, 2, 37}, ChannelShape{3, 2, 40},
                                  ChannelShape{2, 3, 20000}, ChannelShape{1, 2, 500}, ChannelShape{6, 1, 100003},
                                  ChannelShape{4, 3, 20}}) {
        for (const bool within_runs : {true, false}) {
            SCOPED_TRACE(name(sh) + (within_runs ? ", within runs" : ", between runs only"));
            std::vector<std::pair<std::size_t, std::size_t>> requests;
            std::size_t checked = 0;
            xgrad::channel_sums<1>(sh, RecordingTerm{within_runs, &sh, &requests, &checked}, ChannelSchedule::serial);
            std::vector<bool> asked(sh.n * sh.c, false);  // per run (n, c)
            for (const auto& [i, count] : requests) {
                ASSERT_GT(count, 0u);
                ASSERT_LE(i + count, sh.size()) << "request at " << i;
                ASSERT_EQ((i + count - 1) / sh.s, i / sh.s) << "a request across runs at " << i;
                asked[i / sh.s] = true;
            }
            for (std::size_t n = 1; n < sh.n; ++n) {
                for (std::size_t c = 0; c < sh.c; ++c) EXPECT_TRUE(asked[n * sh.c + c]) << "run (" << n << ", " << c << ")";
            }
        }
    }
}

// The reference variance of channel c, in long double, two passes.
template <class T>
long double ref_variance(const std::vector<T>& x, const ChannelShape& sh, std::size_t c, long double* mean) {
    const auto sums = ref_sum(x, sh);
    std::vector<long double> means(sh.c);
    for (std::size_t k = 0; k < sh.c; ++k) means[k] = sums[k] / static_cast<long double>(sh.per_channel());
    *mean = means[c];
    return ref_sq(x, sh, means)[c] / static_cast<long double>(sh.per_channel());
}

// 1e4 + N(0, 1e-2) in float: Σx² - n·mean² would lose every digit; the shifted sums keep them.
TEST(ChannelReduce, VarianceOfFloatWithLargeMean) {
    for (const ChannelShape sh : {ChannelShape{64, 4, 784}, ChannelShape{4096, 8, 1}, ChannelShape{1, 2, 1 << 20}}) {
        SCOPED_TRACE(name(sh));
        const auto x = random_data<float>(sh.size(), 1e4, 1e-2, 11);
        const auto [mean, var] = channel_moments(x.data(), sh);
        for (std::size_t c = 0; c < sh.c; ++c) {
            long double ref_mean = 0;
            const double ref_var = static_cast<double>(ref_variance(x, sh, c, &ref_mean));
            EXPECT_NEAR(mean[c], static_cast<double>(ref_mean), 1e-9);
            EXPECT_NEAR(var[c], ref_var, 1e-9 * ref_var);
            // The data's own variance: float rounding near 1e4 (steps of 2^-10) adds about 2^-20 / 12.
            EXPECT_NEAR(var[c], 1e-4, 2e-5);
        }
    }
}

// The one-pass statistics shift by a channel's first element; where that element is far from the
// mean (an outlier first, on a large mean), the cancellation passes the factor 8 past which
// statistics.hpp takes the group again in two passes: mean and variance stay within the rounding
// of a sum of n terms of a two-pass reference, in float and double. An outlier of 2.5 spreads
// (a factor of about 7) stays on the one-pass path.
template <class T>
void check_variance_with_outlier_first(double outlier) {
    for (const ChannelShape sh : {ChannelShape{64, 3, 784}, ChannelShape{5000, 4, 1}, ChannelShape{2, 2, 3}}) {
        SCOPED_TRACE(name(sh) + ", outlier " + std::to_string(outlier));
        auto x = random_data<T>(sh.size(), 1e4, 1e-2, 13);
        for (std::size_t c = 0; c < sh.c; ++c) x[c * sh.s] = static_cast<T>(1e4 + outlier);
        const auto [mean, var] = channel_moments(x.data(), sh);
        for (std::size_t c = 0; c < sh.c; ++c) {
            long double ref_mean = 0;
            const double ref_var = static_cast<double>(ref_variance(x, sh, c, &ref_mean));
            const double n = static_cast<double>(sh.per_channel());
            // The rounding of a sum of n terms, on the mean of the data's magnitudes.
            const double mean_abs = (1e4 * (n - 1) + std::fabs(1e4 + outlier)) / n;
            EXPECT_NEAR(mean[c], static_cast<double>(ref_mean), 4 * n * 0x1p-53 * mean_abs);
            EXPECT_NEAR(var[c], ref_var, 4 * n * 0x1p-53 * ref_var) << "c = " << c;
        }
    }
}

TEST(ChannelReduce, VarianceWithAnOutlierFirstFloat) {
    for (double outlier : {0.025, 1.0, 1e3, -3e4}) check_variance_with_outlier_first<float>(outlier);
}
TEST(ChannelReduce, VarianceWithAnOutlierFirstDouble) {
    for (double outlier : {0.025, 1.0, 1e3, 1e8}) check_variance_with_outlier_first<double>(outlier);
}

// group_moments over blocks of groups (the cache-blocked walk's calls, which take each group's shift
// just before its sums where groups are one run of memory summed in one piece) gives the bits of the
// call over all groups, for groups of one run and of several pieces, one row a group or several, and
// groups whose shift cancels (outliers first: taken again in two passes).
template <class T>
void check_blocks_give_the_whole_bits(const ChannelShape& sh, std::size_t groups, unsigned seed) {
    SCOPED_TRACE(name(sh) + ", " + std::to_string(groups) + " groups");
    const auto grouping = xgrad::Grouping::per_sample(sh, groups);
    std::vector<T> x = random_data<T>(sh.size(), 3.0, 2.0, seed);
    const std::size_t length = grouping.group_size();
    for (std::size_t g = 0; g < grouping.groups(); g += 3) {
        for (std::size_t j = 0; j < std::min<std::size_t>(4, length); ++j) x[g * length + j] = T(1000);
    }
    const xgrad::Moments whole = xgrad::batch_moments(grouping, x.data());
    for (std::size_t block : {std::size_t{1}, std::size_t{3}, grouping.groups()}) {
        xgrad::Moments blocked{std::vector<double>(grouping.groups()), std::vector<double>(grouping.groups())};
        for (std::size_t g = 0; g < grouping.groups(); g += block) {
            xgrad::group_moments(grouping, x.data(), xgrad::Rows::block(g, std::min(grouping.groups(), g + block)),
                                 blocked);
        }
        for (std::size_t g = 0; g < grouping.groups(); ++g) {
            EXPECT_EQ(std::memcmp(&blocked.mean[g], &whole.mean[g], sizeof(double)), 0) << "mean, group " << g;
            EXPECT_EQ(std::memcmp(&blocked.var[g], &whole.var[g], sizeof(double)), 0) << "var, group " << g;
        }
    }
}

TEST(GroupStatistics, BlocksGiveTheWholeCallsBits) {
    for (const auto& [sh, groups] : std::vector<std::pair<ChannelShape, std::size_t>>{
             {{3, 8, 49}, 4}, {{4, 6, 2000}, 3}, {{2, 4, 16384}, 4}, {{2, 2, 20000}, 1}, {{5, 6, 7}, 2}, {{9, 4, 1}, 1}}) {
        check_blocks_give_the_whole_bits<float>(sh, groups, 41);
        check_blocks_give_the_whole_bits<double>(sh, groups, 43);
    }
}

TEST(ChannelReduce, ShapesAndErrors) {
    const auto nchw = xgrad::channel_shape(std::vector<std::size_t>{2, 3, 4, 5});
    EXPECT_EQ(nchw.n, 2u);
    EXPECT_EQ(nchw.c, 3u);
    EXPECT_EQ(nchw.s, 20u);
    const auto nc = xgrad::channel_shape(std::array<std::size_t, 2>{7, 9});
    EXPECT_EQ(nc.s, 1u);
    EXPECT_THROW(xgrad::channel_shape(std::vector<std::size_t>{5}), xgrad::ShapeError);

    const std::vector<float> x(24, 1.0f);
    xgrad::Moments two{std::vector<double>(2), std::vector<double>(2)};
    EXPECT_THROW(xgrad::group_moments(xgrad::Grouping::per_channel(ChannelShape{2, 3, 4}), x.data(),
                                      xgrad::Rows::all(3), two),
                 xgrad::ShapeError);
    EXPECT_THROW(xgrad::batch_moments(xgrad::Grouping::per_channel(ChannelShape{0, 3, 4}), x.data()),
                 std::invalid_argument);
    EXPECT_TRUE(xgrad::channel_sum(x.data(), ChannelShape{2, 0, 4}).empty());
    const auto zeros = xgrad::channel_sum(x.data(), ChannelShape{0, 3, 4});
    EXPECT_EQ(zeros, std::vector<double>(3, 0.0));
}

}  // namespace
