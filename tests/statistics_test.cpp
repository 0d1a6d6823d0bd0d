// The tests behind the claims' verdicts, against closed forms and published tables.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <numbers>
#include <vector>

#include "experiments/statistics.hpp"

namespace {

using xgrad::Spread;

TEST(Statistics, SpreadIsMeanSampleSdMinMax) {
    const Spread s = xgrad::spread_of({1.0, 2.0, 6.0});
    EXPECT_EQ(s.n, 3u);
    EXPECT_DOUBLE_EQ(s.mean, 3.0);
    EXPECT_DOUBLE_EQ(s.sd, std::sqrt(7.0));  // ((4 + 1 + 9) / 2)
    EXPECT_EQ(s.min, 1.0);
    EXPECT_EQ(s.max, 6.0);
    EXPECT_EQ(xgrad::format_spread(xgrad::spread_of({0.5, 0.5}), 2), "0.50 ± 0.00 (n=2)");
    EXPECT_EQ(xgrad::format_spread(xgrad::spread_of({})), "-");
    EXPECT_EQ(xgrad::spread_of({4.0}).sd, 0.0);
}

TEST(Statistics, StudentTailMatchesTheClosedFormsForOneAndTwoDegreesOfFreedom) {
    for (const double t : {-7.0, -1.5, -0.2, 0.0, 0.3, 1.0, 2.5, 12.706, 100.0}) {
        // df = 1 is Cauchy; df = 2 has P(T > t) = 1/2 − t / (2 sqrt(t² + 2)).
        EXPECT_NEAR(xgrad::student_t_upper_tail(t, 1), 0.5 - std::atan(t) / std::numbers::pi, 1e-12) << t;
        EXPECT_NEAR(xgrad::student_t_upper_tail(t, 2), 0.5 - t / (2 * std::sqrt(t * t + 2)), 1e-12) << t;
    }
}

TEST(Statistics, StudentTailMatchesTheTablesCriticalValues) {
    // One-sided 5% and 2.5% critical values of Student's t, as printed in every table.
    EXPECT_NEAR(xgrad::student_t_upper_tail(2.015, 5), 0.05, 5e-5);
    EXPECT_NEAR(xgrad::student_t_upper_tail(2.571, 5), 0.025, 5e-5);
    EXPECT_NEAR(xgrad::student_t_upper_tail(1.812, 10), 0.05, 5e-5);
    EXPECT_NEAR(xgrad::student_t_upper_tail(2.228, 10), 0.025, 5e-5);
    EXPECT_NEAR(xgrad::student_t_upper_tail(1.697, 30), 0.05, 5e-5);
    // Far out in the tail and for large df (the normal's 1.6449 at 5%).
    EXPECT_NEAR(xgrad::student_t_upper_tail(1.6449, 1e7), 0.05, 1e-5);
    EXPECT_LT(xgrad::student_t_upper_tail(40, 8), 1e-9);
    EXPECT_EQ(xgrad::student_t_upper_tail(std::numeric_limits<double>::infinity(), 3), 0.0);
    EXPECT_TRUE(std::isnan(xgrad::student_t_upper_tail(1, 0)));
}

TEST(Statistics, WelchMatchesAHandComputedExample) {
    // a = {10, 12, 14} (mean 12, sd 2), b = {7, 8, 9} (mean 8, sd 1): se² = 4/3 + 1/3, t = 4 / sqrt(5/3),
    // df = (5/3)² / ((4/3)² / 2 + (1/3)² / 2) = 50/17.
    const xgrad::WelchTest test = xgrad::welch_greater(xgrad::spread_of({10, 12, 14}), xgrad::spread_of({7, 8, 9}));
    EXPECT_DOUBLE_EQ(test.difference, 4.0);
    EXPECT_NEAR(test.t, 4 / std::sqrt(5.0 / 3), 1e-12);
    EXPECT_NEAR(test.df, 50.0 / 17, 1e-12);
    EXPECT_NEAR(test.p, xgrad::student_t_upper_tail(test.t, test.df), 1e-15);
    EXPECT_GT(test.p, 0.01);
    EXPECT_LT(test.p, 0.05);
    // The other direction is the complement.
    EXPECT_NEAR(xgrad::welch_greater(xgrad::spread_of({7, 8, 9}), xgrad::spread_of({10, 12, 14})).p, 1 - test.p, 1e-12);
}

TEST(Statistics, WelchHasNoAnswerWithoutTwoValuesASideAndIsCertainWithoutSpread) {
    EXPECT_TRUE(std::isnan(xgrad::welch_greater(xgrad::spread_of({1}), xgrad::spread_of({0, 0.1})).p));
    EXPECT_EQ(xgrad::welch_greater(xgrad::spread_of({1, 1}), xgrad::spread_of({0, 0})).p, 0.0);
    EXPECT_EQ(xgrad::welch_greater(xgrad::spread_of({0, 0}), xgrad::spread_of({1, 1})).p, 1.0);
    EXPECT_EQ(xgrad::welch_greater(xgrad::spread_of({1, 1}), xgrad::spread_of({1, 1})).p, 0.5);
}

TEST(Statistics, MannWhitneyIsTheExactTailOfTheRanks) {
    const double inf = std::numeric_limits<double>::infinity();
    // Complete separation of 5 and 5: one split in C(10, 5) = 252 is as extreme.
    EXPECT_NEAR(xgrad::mann_whitney_greater({6, 7, 8, 9, 10}, {1, 2, 3, 4, 5}), 1.0 / 252, 1e-15);
    // Runs that never reached a target rank above every finite count.
    EXPECT_NEAR(xgrad::mann_whitney_greater({inf, inf, inf}, {400, 500, 450}), 1.0 / 20, 1e-15);
    // One swap: U = 24 of 25; the splits with U >= 24 are 2 of 252.
    EXPECT_NEAR(xgrad::mann_whitney_greater({5, 7, 8, 9, 10}, {1, 2, 3, 4, 6}), 2.0 / 252, 1e-15);
    // All tied: every split has the same U.
    EXPECT_DOUBLE_EQ(xgrad::mann_whitney_greater({inf, inf}, {inf, inf}), 1.0);
    EXPECT_TRUE(std::isnan(xgrad::mann_whitney_greater({}, {1})));
    EXPECT_THROW(xgrad::mann_whitney_greater(std::vector<double>(13, 1), std::vector<double>(12, 0)), std::invalid_argument);
}

TEST(Statistics, FormatsPValues) {
    EXPECT_EQ(xgrad::format_p(0.0123), "p = 0.012");
    EXPECT_EQ(xgrad::format_p(0.0004), "p < 0.001");
    EXPECT_EQ(xgrad::format_p(std::numeric_limits<double>::quiet_NaN()), "p = n/a");
}

}  // namespace
