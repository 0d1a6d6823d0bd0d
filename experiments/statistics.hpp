// Statistics over seeds for the claim rows: the spread of a figure, and the one-sided tests that
// decide whether one arm's figure is larger than another's.
//
// Welch's t-test (unequal variances) compares means from (mean, sd, n) alone. Figures that can be
// infinite, such as the steps a run needed to reach a target it never reached, are compared with
// the exact Mann–Whitney U test instead, which only ranks them.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

namespace xgrad {

// Mean, sample standard deviation, min and max of values over seeds.
struct Spread {
    double mean = 0, sd = 0, min = 0, max = 0;
    std::size_t n = 0;
};
Spread spread_of(const std::vector<double>& values);
// "0.9812 ± 0.0011 (n=3)", with `digits` decimals; "-" for n = 0.
std::string format_spread(const Spread& s, int digits = 4);

// The level below which a one-sided p-value counts as evidence in the claims' verdicts.
inline constexpr double significance_level = 0.05;

// P(T > t) for Student's t distribution with df > 0 degrees of freedom (df need not be whole).
double student_t_upper_tail(double t, double df);

struct WelchTest {
    double difference;  // mean a − mean b
    double t, df;
    double p;  // one-sided: the probability of a difference this large or larger if the means were equal
};
// H1: mean a > mean b. p is NaN when either side has fewer than 2 values (no variance to test
// against). When both sds are 0, p is 0, 0.5 or 1 as a's mean is above, equal to or below b's.
WelchTest welch_greater(const Spread& a, const Spread& b);

// The exact one-sided p-value of the Mann–Whitney U test, H1: values of a tend to be larger than
// values of b; ties (infinities among them) count half. Enumerates every split of the pooled
// values, so a and b together hold at most 24. NaN when either is empty.
double mann_whitney_greater(const std::vector<double>& a, const std::vector<double>& b);

// "p = 0.012", "p < 0.001", "p = n/a" (NaN).
std::string format_p(double p);

}  // namespace xgrad
