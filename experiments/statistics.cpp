#include "experiments/statistics.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <stdexcept>

namespace xgrad {
namespace {

constexpr double nan_value = std::numeric_limits<double>::quiet_NaN();

// The continued fraction of the regularized incomplete beta function I_x(a, b), by the modified
// Lentz method; converges quickly for x < (a + 1) / (a + b + 2).
double incomplete_beta_fraction(double a, double b, double x) {
    constexpr double tiny = 1e-300;
    constexpr double epsilon = 1e-15;
    double c = 1.0;
    double d = 1.0 - (a + b) * x / (a + 1.0);
    d = 1.0 / (std::abs(d) < tiny ? tiny : d);
    double fraction = d;
    for (int m = 1; m <= 1000; ++m) {
        const double md = m;
        // The even and the odd step of the fraction.
        for (const double numerator : {md * (b - md) * x / ((a + 2 * md - 1) * (a + 2 * md)),
                                       -(a + md) * (a + b + md) * x / ((a + 2 * md) * (a + 2 * md + 1))}) {
            d = 1.0 + numerator * d;
            d = 1.0 / (std::abs(d) < tiny ? tiny : d);
            c = 1.0 + numerator / c;
            if (std::abs(c) < tiny) c = tiny;
            fraction *= c * d;
            if (numerator == 0 || std::abs(c * d - 1.0) < epsilon) return fraction;
        }
    }
    return fraction;
}

double regularized_incomplete_beta(double a, double b, double x) {
    if (x <= 0) return 0;
    if (x >= 1) return 1;
    const double log_front = std::lgamma(a + b) - std::lgamma(a) - std::lgamma(b) + a * std::log(x) + b * std::log1p(-x);
    const double front = std::exp(log_front);
    if (x < (a + 1) / (a + b + 2)) return front * incomplete_beta_fraction(a, b, x) / a;
    return 1.0 - front * incomplete_beta_fraction(b, a, 1.0 - x) / b;
}

}  // namespace

Spread spread_of(const std::vector<double>& values) {
    Spread s;
    s.n = values.size();
    if (s.n == 0) return s;
    s.min = *std::min_element(values.begin(), values.end());
    s.max = *std::max_element(values.begin(), values.end());
    for (double v : values) s.mean += v;
    s.mean /= static_cast<double>(s.n);
    if (s.n > 1) {
        double sq = 0;
        for (double v : values) sq += (v - s.mean) * (v - s.mean);
        s.sd = std::sqrt(sq / static_cast<double>(s.n - 1));
    }
    return s;
}

std::string format_spread(const Spread& s, int digits) {
    if (s.n == 0) return "-";
    char buf[96];
    std::snprintf(buf, sizeof buf, "%.*f ± %.*f (n=%zu)", digits, s.mean, digits, s.sd, s.n);
    return buf;
}

double student_t_upper_tail(double t, double df) {
    if (!(df > 0) || std::isnan(t)) return nan_value;
    if (std::isinf(t)) return t > 0 ? 0.0 : 1.0;
    // P(|T| > |t|) = I_{df / (df + t²)}(df / 2, 1 / 2).
    const double two_sided = regularized_incomplete_beta(df / 2, 0.5, df / (df + t * t));
    return t > 0 ? two_sided / 2 : 1.0 - two_sided / 2;
}

WelchTest welch_greater(const Spread& a, const Spread& b) {
    WelchTest test{a.mean - b.mean, nan_value, nan_value, nan_value};
    if (a.n < 2 || b.n < 2) return test;
    const double va = a.sd * a.sd / static_cast<double>(a.n);
    const double vb = b.sd * b.sd / static_cast<double>(b.n);
    if (va + vb == 0) {
        test.p = test.difference > 0 ? 0.0 : test.difference < 0 ? 1.0 : 0.5;
        return test;
    }
    test.t = test.difference / std::sqrt(va + vb);
    // Welch–Satterthwaite.
    test.df = (va + vb) * (va + vb) / (va * va / static_cast<double>(a.n - 1) + vb * vb / static_cast<double>(b.n - 1));
    test.p = student_t_upper_tail(test.t, test.df);
    return test;
}

double mann_whitney_greater(const std::vector<double>& a, const std::vector<double>& b) {
    if (a.empty() || b.empty()) return nan_value;
    const std::size_t n = a.size() + b.size();
    constexpr std::size_t largest = 24;  // C(24, 12) = 2.7 million splits
    if (n > largest) {
        throw std::invalid_argument("mann_whitney_greater: " + std::to_string(n) + " values; the exact test enumerates at most " +
                                    std::to_string(largest));
    }
    std::vector<double> pooled = a;
    pooled.insert(pooled.end(), b.begin(), b.end());
    // U counted in halves: 2 for each pair x in the group > y outside it, 1 for each tie.
    const auto twice_u = [&](const std::vector<bool>& in_group) {
        long count = 0;
        for (std::size_t i = 0; i < n; ++i) {
            if (!in_group[i]) continue;
            for (std::size_t j = 0; j < n; ++j) {
                if (in_group[j]) continue;
                count += pooled[i] > pooled[j] ? 2 : pooled[i] == pooled[j] ? 1 : 0;
            }
        }
        return count;
    };
    std::vector<bool> observed(n, false);
    std::fill(observed.begin(), observed.begin() + static_cast<std::ptrdiff_t>(a.size()), true);
    const long u_observed = twice_u(observed);
    // Every choice of which a.size() pooled values are "a", each equally likely if a and b
    // come from one distribution.
    std::vector<bool> group = observed;
    std::size_t at_least = 0, splits = 0;
    do {
        ++splits;
        at_least += twice_u(group) >= u_observed;
    } while (std::prev_permutation(group.begin(), group.end()));
    return static_cast<double>(at_least) / static_cast<double>(splits);
}

std::string format_p(double p) {
    if (std::isnan(p)) return "p = n/a";
    if (p < 0.001) return "p < 0.001";
    char buf[32];
    std::snprintf(buf, sizeof buf, "p = %.3f", p);
    return buf;
}

}  // namespace xgrad
