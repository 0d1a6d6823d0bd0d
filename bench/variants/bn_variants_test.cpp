// The BatchNorm kernel variants of bench/variants against the library's kernels (the normalization
// stages composed over Grouping::per_channel): every statistics algorithm, code and schedule, and
// the xtensor composition, in forward-train (mean, var, y), backward-train (dx, dgamma, dbeta) and
// eval forward, in double to a tight tolerance and in float (accumulating in float or in double)
// to a float one; over_channels bitwise equal to serial; the NHWC kernels against the NCHW ones on
// transposed data; and the variance's accuracy on a float input of large mean, where one-pass
// sums in float lose every digit and two-pass sums keep them. Shapes stay small (ASan), but for a
// few large ones in double that take the library's parallel paths, and the parallel schedules get
// small tasks, so that several blocks are merged.
#include <gtest/gtest.h>
#include <rapidcheck/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "bench/variants/bn_variants.hpp"
#include "layers/normalization/epilogue.hpp"
#include "layers/normalization/normalize.hpp"
#include "tests/generators.hpp"

namespace {

using namespace bn_variants;
using xgrad_test::uniformIn;

constexpr double eps = 1e-5;
constexpr Algorithm algorithms[] = {Algorithm::two_pass, Algorithm::one_pass, Algorithm::welford,
                                    Algorithm::chunked_welford};
constexpr Code codes[] = {Code::plain, Code::xsimd};
constexpr Schedule schedules[] = {Schedule::serial, Schedule::over_channels, Schedule::over_blocks};

// One layer's tensors, (N, C, S) row-major.
template <class T>
struct Batch {
    ChannelShape shape;
    std::vector<T> x, dy, gamma, beta, running_mean, running_var;
};

// Channel c's values are shift_c + scale_c·u, the u spaced evenly over (-1, 1) in a random order:
// the variance stays at least scale²/4, so that E[x²]/var, which the one-pass variance loses
// digits by, stays bounded.
struct Spread {
    double max_shift;
    double min_scale;
    double max_scale;
};

// Small shapes; with sometimes_large, one draw in 20 has at least 2^16 elements, which the
// library's passes and sums split over threads: short rows (the reduction's rows layout) or long
// ones (the cache-blocked walk).
rc::Gen<ChannelShape> genShape(bool sometimes_large) {
    return rc::gen::exec([sometimes_large] {
        if (sometimes_large && *uniformIn(0, 20) == 0) {
            if (*rc::gen::arbitrary<bool>()) {
                return ChannelShape{*uniformIn<std::size_t>(4096, 8193), *uniformIn<std::size_t>(16, 33), 1};
            }
            return ChannelShape{*uniformIn<std::size_t>(4, 9), *uniformIn<std::size_t>(8, 17),
                                *uniformIn<std::size_t>(2048, 4097)};
        }
        ChannelShape sh{*uniformIn<std::size_t>(1, 7), *uniformIn<std::size_t>(1, 5), *uniformIn<std::size_t>(1, 41)};
        if (sh.per_channel() < 2) sh.s = 2;
        return sh;
    });
}

template <class T>
rc::Gen<Batch<T>> genBatch(Spread spread, bool sometimes_large = false) {
    return rc::gen::exec([spread, sometimes_large] {
        Batch<T> b;
        b.shape = *genShape(sometimes_large);
        const ChannelShape& sh = b.shape;
        std::mt19937 rng(*rc::gen::arbitrary<std::uint32_t>());
        const auto uniform = [&](double lo, double hi) { return std::uniform_real_distribution<double>(lo, hi)(rng); };
        const std::size_t n = sh.per_channel();
        b.x.resize(sh.size());
        b.dy.resize(sh.size());
        for (auto& v : b.dy) v = static_cast<T>(uniform(-1.0, 1.0));
        std::vector<std::size_t> rank(n);
        for (std::size_t c = 0; c < sh.c; ++c) {
            const double shift = uniform(-spread.max_shift, spread.max_shift);
            const double scale = uniform(spread.min_scale, spread.max_scale);
            std::iota(rank.begin(), rank.end(), std::size_t{0});
            std::shuffle(rank.begin(), rank.end(), rng);
            for (std::size_t i = 0; i < n; ++i) {
                const double u = (2.0 * static_cast<double>(rank[i]) + 1.0) / static_cast<double>(n) - 1.0;
                b.x[((i / sh.s) * sh.c + c) * sh.s + i % sh.s] = static_cast<T>(shift + scale * u);
            }
            b.gamma.push_back(static_cast<T>(uniform(0.5, 2.0) * (uniform(0.0, 1.0) < 0.5 ? -1.0 : 1.0)));
            b.beta.push_back(static_cast<T>(uniform(-1.0, 1.0)));
            b.running_mean.push_back(static_cast<T>(uniform(-spread.max_shift, spread.max_shift)));
            b.running_var.push_back(static_cast<T>(uniform(0.1, 4.0)));
        }
        return b;
    });
}

template <class To, class From>
std::vector<To> convert(const std::vector<From>& v) {
    return std::vector<To>(v.begin(), v.end());
}

template <class T>
Batch<double> in_double(const Batch<T>& b) {
    return {b.shape, convert<double>(b.x), convert<double>(b.dy), convert<double>(b.gamma), convert<double>(b.beta),
            convert<double>(b.running_mean), convert<double>(b.running_var)};
}

// Everything a variant computes, in double.
struct Results {
    std::vector<double> mean, var, y, dx, dgamma, dbeta, eval_y;
};

// Runs forward(y) -> Moments, backward(moments, dx, dgamma, dbeta) and eval(y) on b's shapes.
template <class T, class Forward, class Backward, class Eval>
Results run(const Batch<T>& b, const Forward& forward, const Backward& backward, const Eval& eval) {
    const std::size_t size = b.shape.size();
    std::vector<T> y(size), dx(size), dgamma(b.shape.c), dbeta(b.shape.c), eval_y(size);
    const Moments m = forward(y.data());
    backward(m, dx.data(), dgamma.data(), dbeta.data());
    eval(eval_y.data());
    return {m.mean, m.var, convert<double>(y), convert<double>(dx), convert<double>(dgamma), convert<double>(dbeta),
            convert<double>(eval_y)};
}

// BatchNorm as the library composes it: normalize_batch, its backward through the batch
// statistics, and normalize_with the running statistics.
Results library(const Batch<double>& b) {
    const auto grouping = xgrad::Grouping::per_channel(b.shape);
    xgrad::NormalizeOptions<double> options;
    options.eps = eps;
    options.gamma = b.gamma.data();
    options.beta = b.beta.data();
    const xgrad::NoEpilogue none;
    xgrad::NormalizedBatch batch;
    const auto forward = [&](double* y) {
        batch = xgrad::normalize_batch(grouping, b.x.data(), options, none, y);
        Moments m{batch.norm.mean, {}};
        for (const double invstd : batch.norm.invstd) m.var.push_back(1.0 / (invstd * invstd) - eps);
        return m;
    };
    const auto backward = [&](const Moments&, double* dx, double* dgamma, double* dbeta) {
        xgrad::normalize_backward(grouping, batch, xgrad::GradientThrough::batch(), b.dy.data(), b.x.data(),
                                  b.gamma.data(), b.beta.data(), none, xgrad::NormalizeGrads<double>{dx, dgamma, dbeta});
    };
    const auto eval = [&](double* y) {
        const auto running = xgrad::running_normalization(b.running_mean.data(), b.running_var.data(), b.shape.c, eps);
        xgrad::normalize_with(grouping, running, b.x.data(), options, none, y);
    };
    return run(b, forward, backward, eval);
}

template <class T, class Acc>
Results nchw(const Batch<T>& b, Algorithm algorithm, Code code, const Parallel& par) {
    const ChannelShape& sh = b.shape;
    return run(
        b,
        [&](T* y) {
            return forward_train<T, Acc>(sh, b.x.data(), b.gamma.data(), b.beta.data(), eps, y, algorithm, code, par);
        },
        [&](const Moments& m, T* dx, T* dgamma, T* dbeta) {
            backward_train<T, Acc>(sh, b.dy.data(), b.x.data(), b.gamma.data(), m, eps, dx, dgamma, dbeta, code, par);
        },
        [&](T* y) {
            forward_eval<T>(sh, b.x.data(), b.gamma.data(), b.beta.data(), b.running_mean.data(), b.running_var.data(),
                            eps, y, code, par);
        });
}

template <class T>
Results composed_of_xtensor(const Batch<T>& b) {
    const ChannelShape& sh = b.shape;
    return run(
        b, [&](T* y) { return xtensor::forward_train<T>(sh, b.x.data(), b.gamma.data(), b.beta.data(), eps, y); },
        [&](const Moments& m, T* dx, T* dgamma, T* dbeta) {
            xtensor::backward_train<T>(sh, b.dy.data(), b.x.data(), b.gamma.data(), m, eps, dx, dgamma, dbeta);
        },
        [&](T* y) {
            xtensor::forward_eval<T>(sh, b.x.data(), b.gamma.data(), b.beta.data(), b.running_mean.data(),
                                     b.running_var.data(), eps, y);
        });
}

// (N, C, S) data as (N, S, C), and back.
template <class T>
std::vector<T> to_nhwc(const ChannelShape& sh, const std::vector<T>& v) {
    std::vector<T> out(v.size());
    for (std::size_t n = 0; n < sh.n; ++n)
        for (std::size_t c = 0; c < sh.c; ++c)
            for (std::size_t s = 0; s < sh.s; ++s) out[(n * sh.s + s) * sh.c + c] = v[(n * sh.c + c) * sh.s + s];
    return out;
}

template <class T>
std::vector<T> from_nhwc(const ChannelShape& sh, const std::vector<T>& v) {
    return to_nhwc(ChannelShape{sh.n, sh.s, sh.c}, v);  // (N, S, C) seen as (N, C', S') with C' = S
}

// The NHWC kernels on b transposed, their tensors transposed back.
template <class T, class Acc>
Results nhwc_transposed(const Batch<T>& b, const Parallel& par) {
    const ChannelShape& sh = b.shape;
    const std::vector<T> x = to_nhwc(sh, b.x), dy = to_nhwc(sh, b.dy);
    Results r = run(
        b, [&](T* y) { return nhwc::forward_train<T, Acc>(sh, x.data(), b.gamma.data(), b.beta.data(), eps, y, par); },
        [&](const Moments& m, T* dx, T* dgamma, T* dbeta) {
            nhwc::backward_train<T, Acc>(sh, dy.data(), x.data(), b.gamma.data(), m, eps, dx, dgamma, dbeta, par);
        },
        [&](T* y) {
            nhwc::forward_eval<T>(sh, x.data(), b.gamma.data(), b.beta.data(), b.running_mean.data(),
                                  b.running_var.data(), eps, y, par);
        });
    for (auto* t : {&r.y, &r.dx, &r.eval_y}) *t = from_nhwc(sh, *t);
    return r;
}

// Fails unless every value of `actual` is within tolerance·max(scale, |expected|) of `expected`.
void check_values(const std::vector<double>& actual, const std::vector<double>& expected, double tolerance,
                  double scale, const std::string& what) {
    RC_ASSERT(actual.size() == expected.size());
    for (std::size_t i = 0; i < actual.size(); ++i) {
        if (!(std::abs(actual[i] - expected[i]) <= tolerance * std::max(scale, std::abs(expected[i])))) {
            std::ostringstream msg;
            msg.precision(17);
            msg << what << " at " << i << ": " << actual[i] << ", expected " << expected[i];
            RC_FAIL(msg.str());
        }
    }
}

// Means and y relative to the data's unit scale, variances relative to themselves; dx relative to
// the terms that cancel in it, gamma·invstd·dy (for two values per channel dx is 0 up to eps);
// dgamma and dbeta relative to sqrt(n), the size of a sum of n terms of random sign.
template <class T>
void check_results(const Results& actual, const Results& expected, const Batch<T>& b, double tolerance,
                   const std::string& what) {
    double dx_scale = 0;
    for (std::size_t c = 0; c < b.shape.c; ++c) {
        dx_scale = std::max(dx_scale, std::abs(static_cast<double>(b.gamma[c])) / std::sqrt(expected.var[c] + eps));
    }
    double dy_max = 0;
    for (const T v : b.dy) dy_max = std::max(dy_max, std::abs(static_cast<double>(v)));
    dx_scale *= dy_max;
    const double sum_scale = std::sqrt(static_cast<double>(b.shape.per_channel()));
    check_values(actual.mean, expected.mean, tolerance, 1.0, what + ": mean");
    check_values(actual.var, expected.var, tolerance, 0.0, what + ": var");
    check_values(actual.y, expected.y, tolerance, 1.0, what + ": y");
    check_values(actual.dx, expected.dx, tolerance, dx_scale, what + ": dx");
    check_values(actual.dgamma, expected.dgamma, tolerance, sum_scale, what + ": dgamma");
    check_values(actual.dbeta, expected.dbeta, tolerance, sum_scale, what + ": dbeta");
    check_values(actual.eval_y, expected.eval_y, tolerance, 1.0, what + ": eval y");
}

std::string variant_name(Algorithm a, Code code, Schedule s) {
    return std::string(name(a)) + "/" + std::string(name(code)) + "/" + std::string(name(s));
}

// Every NCHW variant with accumulator Acc against `expected`; over_channels also bitwise equal to
// serial, every channel being summed in the same order.
template <class T, class Acc>
void check_nchw_variants(const Batch<T>& b, const Results& expected, double tolerance) {
    const std::size_t task_elems = *uniformIn<std::size_t>(1, b.shape.size() + 1);
    for (const Algorithm a : algorithms) {
        for (const Code code : codes) {
            const Results serial = nchw<T, Acc>(b, a, code, {Schedule::serial, task_elems});
            for (const Schedule s : schedules) {
                const Results r = nchw<T, Acc>(b, a, code, {s, task_elems});
                check_results(r, expected, b, tolerance, variant_name(a, code, s));
                if (s == Schedule::over_channels) {
                    check_results(r, serial, b, 0.0, variant_name(a, code, s) + " vs serial");
                }
            }
        }
    }
}

// Above what summation orders change in double, the most in the one-pass variance (about 1e-13
// here, growing with E[x²]/var, up to 4096 here), and far below any error in a formula.
constexpr double double_tolerance = 1e-10;
// Float data, float or double sums: a few float roundings, over at most 240 values per channel.
constexpr double float_tolerance = 1e-4;

RC_GTEST_PROP(BnVariants, DoubleVariantsMatchTheLibraryKernels, ()) {
    const Batch<double> b = *genBatch<double>({4.0, 0.25, 4.0}, true);
    const Results expected = library(b);
    check_nchw_variants<double, double>(b, expected, double_tolerance);
    check_results(composed_of_xtensor(b), expected, b, double_tolerance, "xtensor");
}

RC_GTEST_PROP(BnVariants, FloatVariantsMatchTheLibraryKernelsToFloatPrecision, ()) {
    const Batch<float> b = *genBatch<float>({1.0, 0.5, 2.0});
    const Results expected = library(in_double(b));
    check_nchw_variants<float, float>(b, expected, float_tolerance);
    check_nchw_variants<float, double>(b, expected, float_tolerance);
    check_results(composed_of_xtensor(b), expected, b, float_tolerance, "xtensor");
}

template <class T, class Acc>
void check_nhwc_against_nchw(const Batch<T>& b, double tolerance) {
    const Results expected = nchw<T, Acc>(b, Algorithm::two_pass, Code::plain, {});
    const std::size_t task_elems = *uniformIn<std::size_t>(1, b.shape.size() + 1);
    for (const Schedule s : schedules) {
        const std::string what = "nhwc/" + std::string(name(s));
        check_results(nhwc_transposed<T, Acc>(b, {s, task_elems}), expected, b, tolerance, what);
    }
}

RC_GTEST_PROP(BnVariants, NhwcMatchesNchwOnTransposedData, ()) {
    check_nhwc_against_nchw<double, double>(*genBatch<double>({4.0, 0.25, 4.0}), double_tolerance);
    const Batch<float> b = *genBatch<float>({1.0, 0.5, 2.0});
    check_nhwc_against_nchw<float, float>(b, float_tolerance);
    check_nhwc_against_nchw<float, double>(b, float_tolerance);
}

// ---- the one-pass variance's accuracy loss ----

// The largest relative error of a variance over the channels, against a two-pass variance in long
// double of the same values.
double var_rel_error(const ChannelShape& sh, const std::vector<float>& x, const Moments& m) {
    double worst = 0;
    for (std::size_t c = 0; c < sh.c; ++c) {
        long double sum = 0, sq = 0;
        const auto each = [&](auto f) {
            for (std::size_t n = 0; n < sh.n; ++n)
                for (std::size_t s = 0; s < sh.s; ++s) f(static_cast<long double>(x[(n * sh.c + c) * sh.s + s]));
        };
        each([&](long double v) { sum += v; });
        const long double mean = sum / static_cast<long double>(sh.per_channel());
        each([&](long double v) { sq += (v - mean) * (v - mean); });
        const double var = static_cast<double>(sq / static_cast<long double>(sh.per_channel()));
        worst = std::max(worst, std::abs(m.var[c] - var) / var);
    }
    return worst;
}

// x = 1e4 + N(0, 1) in float: E[x²] is 1e8 times the variance, more than float's 2^24 can tell
// apart, so E[x²] - mean² summed in float is noise (mostly clamped to 0), while Σ(x - mean)²
// keeps the variance to the rounding of the mean (below 6e-6 over thousands of seeds). With sums
// in double, even the one-pass variance keeps its digits (below 4e-8).
RC_GTEST_PROP(BnVariantsAccuracy, OnePassFloatSumsLoseTheVarianceOfALargeMeanInput, ()) {
    const ChannelShape sh{16, 3, 64};
    std::mt19937 rng(*rc::gen::arbitrary<std::uint32_t>());
    std::normal_distribution<double> normal(1e4, 1.0);
    std::vector<float> x(sh.size());
    for (auto& v : x) v = static_cast<float>(normal(rng));
    for (const Code code : codes) {
        RC_ASSERT(var_rel_error(sh, x, batch_stats<float, float>(sh, x.data(), Algorithm::one_pass, code, {})) > 1e-2);
        RC_ASSERT(var_rel_error(sh, x, batch_stats<float, float>(sh, x.data(), Algorithm::two_pass, code, {})) < 1e-5);
        RC_ASSERT(var_rel_error(sh, x, batch_stats<float, double>(sh, x.data(), Algorithm::one_pass, code, {})) < 1e-6);
    }
}

}  // namespace
