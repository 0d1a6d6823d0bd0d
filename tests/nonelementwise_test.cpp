// The ops with hand-written kernels, on random shapes of rank 1 to 4: sum and mean (whole, or
// over random axes, negative or not, keepdims or not), max over an axis (gradient to the
// arg-max; the first one on ties), reshape (with and without -1), permute, transpose, matmul
// (double and float) and log_softmax (also its stability for large inputs). Each is checked
// for its value against a reference written here with explicit index arithmetic, and for its
// gradients against central differences (gradcheck, worst error <= 1e-6). Also: shape errors
// name the op and the shapes, a fused expression consumed by a reduction is one node, and a
// linear layer with a cross-entropy loss composed of these ops passes gradcheck. And gemm's own
// promises: split products' bits, the BLAS description, the call log.
#include <gtest/gtest.h>
#include <rapidcheck/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <functional>
#include <limits>
#include <numeric>
#include <random>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <tbb/task_arena.h>

#include "autodiff/blas.hpp"
#include "tests/generators.hpp"

namespace {

using namespace xgrad_test;
using Inputs = std::vector<Var<double>>;
using xgrad::Axes;

constexpr double value_tolerance = 1e-12;

std::size_t normalizeAxis(std::ptrdiff_t axis, std::size_t rank) {
    return static_cast<std::size_t>(axis < 0 ? axis + static_cast<std::ptrdiff_t>(rank) : axis);
}

// A reduction over `axes` by explicit index arithmetic: for every output position, the sum,
// the largest value and the flat input index of its first occurrence, and the element count.
struct Reference {
    Shape kept_shape;  // the output's shape with keepdims
    Shape out_shape;   // the output's shape without keepdims
    Array sum;         // of kept_shape
    Array max;
    std::vector<std::size_t> argmax;
    std::size_t count = 1;
};

Reference reduceReference(const Array& x, const Axes& axes) {
    const Shape s = xgrad::to_shape(x.shape());
    std::vector<bool> reduced(s.size(), false);
    for (auto a : axes) reduced[normalizeAxis(a, s.size())] = true;
    Reference r;
    for (std::size_t i = 0; i < s.size(); ++i) {
        r.kept_shape.push_back(reduced[i] ? 1 : s[i]);
        if (!reduced[i]) r.out_shape.push_back(s[i]);
        if (reduced[i]) r.count *= s[i];
    }
    const std::size_t out_size = xgrad::element_count(r.kept_shape);
    r.sum = xt::zeros<double>(r.kept_shape);
    r.max = Array(xt::zeros<double>(r.kept_shape)) - std::numeric_limits<double>::infinity();
    r.argmax.assign(out_size, 0);
    for (std::size_t flat = 0; flat < x.size(); ++flat) {
        // The output index: the input's multi-index with reduced axes set to 0.
        std::size_t rest = flat, out = 0, stride = 1;
        for (std::size_t i = s.size(); i-- > 0;) {
            const std::size_t idx = rest % s[i];
            rest /= s[i];
            if (!reduced[i]) out += idx * stride;
            stride *= r.kept_shape[i];
        }
        const double v = x.data()[flat];
        r.sum.data()[out] += v;
        if (v > r.max.data()[out]) {
            r.max.data()[out] = v;
            r.argmax[out] = flat;
        }
    }
    return r;
}

Array reshaped(Array a, const Shape& s) {
    a.reshape(s);
    return a;
}

// The prime factors of n, smallest first.
std::vector<std::size_t> primeFactors(std::size_t n) {
    std::vector<std::size_t> f;
    for (std::size_t p = 2; p * p <= n; ++p) {
        while (n % p == 0) {
            f.push_back(p);
            n /= p;
        }
    }
    if (n > 1) f.push_back(n);
    return f;
}

// A shape of rank 1 to 4 holding exactly n elements (its dims may exceed max_dim), written
// with one entry -1 or not.
rc::Gen<std::vector<std::ptrdiff_t>> genReshapeTarget(std::size_t n) {
    return rc::gen::exec([n] {
        const std::size_t rank = *uniformIn<std::size_t>(1, max_rank + 1);
        std::vector<std::ptrdiff_t> target(rank, 1);
        for (std::size_t p : primeFactors(n)) target[*uniformIn<std::size_t>(0, rank)] *= static_cast<std::ptrdiff_t>(p);
        if (*rc::gen::arbitrary<bool>()) target[*uniformIn<std::size_t>(0, rank)] = -1;
        return target;
    });
}

// x with its axes permuted: axis k of the result is axis order[k] of x.
Array permuteReference(const Array& x, const std::vector<std::size_t>& order) {
    const Shape s = xgrad::to_shape(x.shape());
    Shape out_shape;
    for (auto o : order) out_shape.push_back(s[o]);
    std::vector<std::size_t> in_strides(s.size(), 1);
    for (std::size_t i = s.size(); i-- > 1;) in_strides[i - 1] = in_strides[i] * s[i];
    Array out = Array::from_shape(out_shape);
    for (std::size_t flat = 0; flat < out.size(); ++flat) {
        std::size_t rest = flat, in = 0;
        for (std::size_t k = out_shape.size(); k-- > 0;) {
            in += (rest % out_shape[k]) * in_strides[order[k]];
            rest /= out_shape[k];
        }
        out.data()[flat] = x.data()[in];
    }
    return out;
}

Array matmulReference(const Array& a, const Array& b) {
    const std::size_t n = a.shape()[0], k = a.shape()[1], m = b.shape()[1];
    Array out = xt::zeros<double>({n, m});
    for (std::size_t i = 0; i < n; ++i)
        for (std::size_t j = 0; j < m; ++j)
            for (std::size_t l = 0; l < k; ++l) out(i, j) += a(i, l) * b(l, j);
    return out;
}

Array logSoftmaxReference(const Array& x, std::ptrdiff_t axis) {
    const Reference r = reduceReference(x, {axis});
    // log-sum-exp along the axis, shifted by the maximum.
    const Array shifted = broadcastApply(x, r.max, std::minus<>{});
    const Reference e = reduceReference(mapValues(shifted, [](double v) { return std::exp(v); }), {axis});
    Array lse = r.max;
    for (std::size_t i = 0; i < lse.size(); ++i) lse.data()[i] += std::log(e.sum.data()[i]);
    return broadcastApply(x, lse, std::minus<>{});
}

}  // namespace

Axes allAxes(std::size_t rank) {
    Axes axes;
    for (std::size_t i = 0; i < rank; ++i) axes.push_back(static_cast<std::ptrdiff_t>(i));
    return axes;
}

// ---------------------------------------------------------------- sum, mean, max

RC_GTEST_PROP(Reductions, SumWhole, ()) {
    const Array x = *genArray(*genShape(), anywhere(-2, 2));
    const Var<double> y = sum(leaf(x));
    checkClose(y.value(), reshaped(reduceReference(x, allAxes(x.dimension())).sum, {}), value_tolerance, "sum");
    checkGradients([](const Inputs& in) { return sum(in[0]); }, {leaf(x)});
}

RC_GTEST_PROP(Reductions, MeanWhole, ()) {
    const Array x = *genArray(*genShape(), anywhere(-2, 2));
    const Var<double> y = mean(leaf(x));
    const double expected = reduceReference(x, allAxes(x.dimension())).sum.data()[0] / static_cast<double>(x.size());
    checkClose(y.value(), reshaped(Array{expected}, {}), value_tolerance, "mean");
    checkGradients([](const Inputs& in) { return mean(in[0]); }, {leaf(x)});
}

RC_GTEST_PROP(Reductions, SumOverAxes, ()) {
    const Array x = *genArray(*genShape(), anywhere(-2, 2));
    const Axes axes = *genAxes(x.dimension());
    const bool keepdims = *rc::gen::arbitrary<bool>();
    const Reference r = reduceReference(x, axes);
    const Var<double> y = sum(leaf(x), axes, keepdims);
    checkClose(y.value(), reshaped(r.sum, keepdims ? r.kept_shape : r.out_shape), value_tolerance, "sum over axes");
    checkGradients([&](const Inputs& in) { return sum(in[0], axes, keepdims); }, {leaf(x)});
}

RC_GTEST_PROP(Reductions, MeanOverAxes, ()) {
    const Array x = *genArray(*genShape(), anywhere(-2, 2));
    const Axes axes = *genAxes(x.dimension());
    const bool keepdims = *rc::gen::arbitrary<bool>();
    const Reference r = reduceReference(x, axes);
    const Var<double> y = mean(leaf(x), axes, keepdims);
    const Array expected = r.sum / static_cast<double>(r.count);
    checkClose(y.value(), reshaped(expected, keepdims ? r.kept_shape : r.out_shape), value_tolerance, "mean over axes");
    checkGradients([&](const Inputs& in) { return mean(in[0], axes, keepdims); }, {leaf(x)});
}

// Distinct values at least 1/8 apart, so the arg-max does not move under the finite-difference
// step; the whole gradient lands on the arg-max.
RC_GTEST_PROP(Reductions, MaxOverAxisGradientGoesToArgmax, ()) {
    const Array x = *genDistinct(*genShape(), 0.125);
    const std::ptrdiff_t axis = *genAxis(x.dimension());
    const bool keepdims = *rc::gen::arbitrary<bool>();
    const Reference r = reduceReference(x, {axis});
    const Shape out_shape = keepdims ? r.kept_shape : r.out_shape;
    const Var<double> in = leaf(x);
    const Var<double> y = max(in, axis, keepdims);
    checkClose(y.value(), reshaped(r.max, out_shape), 0.0, "max");

    const Array seed = *genArray(out_shape, awayFromZero(0.5, 2));
    y.backward(seed);
    Array expected = xt::zeros<double>(x.shape());
    for (std::size_t i = 0; i < r.argmax.size(); ++i) expected.data()[r.argmax[i]] = seed.data()[i];
    checkClose(in.grad(), expected, 0.0, "gradient of max");
    checkGradients([&](const Inputs& v) { return max(v[0], axis, keepdims); }, {leaf(x)});
}

TEST(Reductions, MaxTiesGoToTheFirst) {
    const Var<double> x(Array{{1.0, 3.0, 3.0}, {2.0, 2.0, 0.0}}, true);
    Var<double> y = max(x, 1);
    EXPECT_EQ(y.value(), (Array{3.0, 2.0}));
    y.backward(Array{1.0, 1.0});
    EXPECT_EQ(x.grad(), (Array{{0.0, 1.0, 0.0}, {1.0, 0.0, 0.0}}));
}

// An empty input, as torch: a sum of zeros, a mean of NaN, and an empty gradient; not xtensor's
// reducer over a null data pointer (undefined behaviour, which the sanitizer job reports).
TEST(Reductions, OfAnEmptyTensorAreZeroOrNaNWithAnEmptyGradient) {
    const Var<double> x(xt::xarray<double>::from_shape({0, 3}), true);
    Var<double> whole = sum(x);
    EXPECT_EQ(whole.value()(), 0.0);
    EXPECT_TRUE(std::isnan(mean(x).value()()));
    EXPECT_EQ(sum(x, {0}).value(), (Array{0.0, 0.0, 0.0}));
    EXPECT_EQ(sum(x, {1}).shape(), (Shape{0}));
    whole.backward();
    EXPECT_EQ(x.grad().shape(), (std::vector<std::size_t>{0, 3}));
    Var<double> by_rows = mean(x, {0});
    EXPECT_TRUE(std::isnan(by_rows.value()(0)));
}

// A reduction consuming a fused expression materializes it as one node: sum, fused, 3 leaves.
RC_GTEST_PROP(Reductions, OfFusedExpressionIsTwoNodes, ()) {
    const auto shapes = *genBroadcastShapes(3);
    Inputs in;
    for (const Shape& s : shapes) in.push_back(leaf(*genArray(s, anywhere(-2, 2))));
    auto f = [](const Inputs& v) { return sum(sigmoid(v[0] * v[1] + v[2])); };
    RC_ASSERT(graph_size(f(in)) == 5u);
    checkGradients(f, in);
}

RC_GTEST_PROP(ShapeErrors, BadReductionAxesAreRefused, ()) {
    const Shape s = *genShape();
    const Var<double> x = leaf(Array(xt::ones<double>(s)));
    const auto rank = static_cast<std::ptrdiff_t>(s.size());
    const std::ptrdiff_t axis = *genAxis(s.size());
    RC_ASSERT_THROWS_AS(sum(x, Axes{rank}), std::invalid_argument);
    RC_ASSERT_THROWS_AS(mean(x, Axes{-rank - 1}), std::invalid_argument);
    RC_ASSERT_THROWS_AS(max(x, rank), std::invalid_argument);
    // The same axis twice, once written from the end.
    const std::ptrdiff_t other = axis < 0 ? axis + rank : axis - rank;
    RC_ASSERT_THROWS_AS(sum(x, Axes{axis, other}), std::invalid_argument);
}

// ---------------------------------------------------------------- reshape, permute, transpose

RC_GTEST_PROP(ShapeOps, Reshape, ()) {
    const Array x = *genArray(*genShape(), anywhere(-2, 2));
    const auto target = *genReshapeTarget(x.size());
    std::size_t known = 1;  // the product of the dims given explicitly
    for (auto d : target) known *= d == -1 ? 1 : static_cast<std::size_t>(d);
    Shape expected_shape;
    for (auto d : target) expected_shape.push_back(d == -1 ? x.size() / known : static_cast<std::size_t>(d));
    const Var<double> y = reshape(leaf(x), target);
    checkClose(y.value(), reshaped(x, expected_shape), 0.0, "reshape");
    checkGradients([&](const Inputs& in) { return reshape(in[0], target); }, {leaf(x)});
}

RC_GTEST_PROP(ShapeErrors, ReshapeToAnotherSizeNamesOpAndShape, ()) {
    const Shape s = *genShape();
    const Var<double> x = leaf(Array(xt::ones<double>(s)));
    const auto n = static_cast<std::ptrdiff_t>(xgrad::element_count(s));
    try {
        reshape(x, {n + 1});
        RC_FAIL("reshape to " + std::to_string(n + 1) + " elements did not throw");
    } catch (const xgrad::ShapeError& e) {
        const std::string message = e.what();
        RC_ASSERT(message.find("reshape") != std::string::npos);
        RC_ASSERT(message.find(xgrad::shape_str(s)) != std::string::npos);
    }
}

RC_GTEST_PROP(ShapeOps, Permute, ()) {
    const Array x = *genArray(*genShape(), anywhere(-2, 2));
    const auto order = *genPermutation(x.dimension());
    const Var<double> y = permute(leaf(x), order);
    checkClose(y.value(), permuteReference(x, order), 0.0, "permute");
    checkGradients([&](const Inputs& in) { return permute(in[0], order); }, {leaf(x)});
}

RC_GTEST_PROP(ShapeOps, TransposeSwapsTheLastTwoAxes, ()) {
    const Array x = *genArray(*genShape(2), anywhere(-2, 2));
    std::vector<std::size_t> order(x.dimension());
    std::iota(order.begin(), order.end(), std::size_t{0});
    std::swap(order[order.size() - 1], order[order.size() - 2]);
    const Var<double> y = transpose(leaf(x));
    checkClose(y.value(), permuteReference(x, order), 0.0, "transpose");
    checkGradients([](const Inputs& in) { return transpose(in[0]); }, {leaf(x)});
}

// ---------------------------------------------------------------- matmul

RC_GTEST_PROP(Matmul, MatchesLoopInDoubleAndFloat, ()) {
    const std::size_t n = *genDim(), k = *genDim(), m = *genDim();
    const Array a = *genArray({n, k}, anywhere(-2, 2));
    const Array b = *genArray({k, m}, anywhere(-2, 2));
    const Var<double> y = matmul(leaf(a), leaf(b));
    checkClose(y.value(), matmulReference(a, b), value_tolerance, "matmul");
    checkGradients([](const Inputs& in) { return matmul(in[0], in[1]); }, {leaf(a), leaf(b)});
    // An expression operand is materialized first.
    checkClose(matmul(leaf(a) * 2.0, leaf(b)).value(), 2.0 * matmulReference(a, b), value_tolerance,
               "matmul of an expression");

    // Float (sgemm): value and gradients against the double reference.
    const Var<float> af(xt::xarray<float>(xt::cast<float>(a)), true), bf(xt::xarray<float>(xt::cast<float>(b)), true);
    const Var<float> yf = matmul(af, bf);
    const Array seed = *genArray({n, m}, anywhere(-2, 2));
    yf.backward(xt::xarray<float>(xt::cast<float>(seed)));
    checkClose(Array(xt::cast<double>(yf.value())), matmulReference(a, b), 1e-5, "float matmul");
    checkClose(Array(xt::cast<double>(af.grad())), matmulReference(seed, xt::transpose(b)), 1e-5, "float matmul da");
    checkClose(Array(xt::cast<double>(bf.grad())), matmulReference(xt::transpose(a), seed), 1e-5, "float matmul db");
}

// Debian's OpenBLAS falls back to SSE3 kernels on CPU models it does not know; xgrad chooses
// the AVX-512 or AVX2 ones there (autodiff/blas.cpp), unless OPENBLAS_CORETYPE says otherwise.
TEST(Matmul, BlasRunsVectorKernelsWhereTheCpuHasThem) {
    if (std::getenv("OPENBLAS_CORETYPE")) GTEST_SKIP() << "OPENBLAS_CORETYPE is set";
    __builtin_cpu_init();
    if (!__builtin_cpu_supports("avx2")) GTEST_SKIP() << "no AVX2 on this CPU";
    const std::string kernels = xgrad::blas_kernels();
    EXPECT_NE(kernels, "Prescott");
    EXPECT_NE(kernels, "Core2");
}

// Threads asking at once all read the same text: OpenBLAS builds it in one static buffer on every
// call, which threads racing through garbled (cut at a NUL, or a part twice).
TEST(Matmul, BlasConfigIsTheSameTextOnThreadsAskingAtOnce) {
    constexpr std::size_t thread_count = 8, calls = 20000;  // enough to garble it every time before
    std::vector<std::string> seen(thread_count * calls);
    std::vector<std::thread> threads;
    for (std::size_t t = 0; t < thread_count; ++t) {
        threads.emplace_back([&seen, t] {
            for (std::size_t k = 0; k < calls; ++k) seen[t * calls + k] = xgrad::blas_config();
        });
    }
    for (auto& thread : threads) thread.join();
    EXPECT_NE(seen[0].find("OpenBLAS"), std::string::npos) << seen[0];
    for (const std::string& text : seen) ASSERT_EQ(text, seen[0]);
}

// A log records each float product once, as it was called (a split product is one call, not its
// parts), from every thread, and only while it lives; two at once are an error.
TEST(Matmul, GemmCallLogRecordsEachFloatCallAsMade) {
    std::vector<float> a(300 * 600, 1.0f), b(600 * 70, 1.0f), c(300 * 70);
    std::vector<double> ad(4, 1.0), cd(4);
    const auto product = [&] { xgrad::gemm<float>(true, false, 300, 70, 600, 1.0f, a.data(), 300, b.data(), 70, 0.0f, c.data(), 70); };
    std::vector<xgrad::GemmCall> calls;
    {
        const xgrad::GemmCallLog log;
        EXPECT_THROW(xgrad::GemmCallLog second, std::logic_error);
        product();
        std::thread other(product);
        other.join();
        xgrad::gemm<double>(false, false, 2, 2, 2, 1.0, ad.data(), 2, ad.data(), 2, 0.0, cd.data(), 2);
        calls = log.calls();
    }
    product();
    ASSERT_EQ(calls.size(), 2u);
    for (const xgrad::GemmCall& call : calls) {
        EXPECT_TRUE(call.trans_a);
        EXPECT_FALSE(call.trans_b);
        EXPECT_EQ(std::vector<std::size_t>({call.m, call.n, call.k, call.lda, call.ldb, call.ldc}),
                  std::vector<std::size_t>({300, 70, 600, 300, 70, 70}));
        EXPECT_EQ(call.flops(), 2.0 * 300 * 70 * 600);
    }
    const xgrad::GemmCallLog after;  // the first log is gone, so another may record
    EXPECT_TRUE(after.calls().empty());
}

// A product large enough to be split gives the same bits with one thread and with two: the
// parts depend on the shape alone.
TEST(Matmul, SplitProductsDoNotDependOnTheThreadCount) {
    struct Case {
        bool trans_a, trans_b;
        std::size_t m, n, k;
    };
    const Case cases[] = {{false, false, 257, 64, 512}, {false, false, 64, 832, 1024}, {true, false, 300, 70, 600},
                          {false, true, 70, 300, 600},  {true, true, 129, 200, 400}};
    std::mt19937 rng(7);
    std::normal_distribution<float> normal;
    for (const Case& c : cases) {
        std::vector<float> a(c.m * c.k), b(c.k * c.n);
        for (float& v : a) v = normal(rng);
        for (float& v : b) v = normal(rng);
        const auto product = [&](int threads) {
            std::vector<float> out(c.m * c.n, 1.0f);
            tbb::task_arena(threads).execute([&] {
                xgrad::gemm<float>(c.trans_a, c.trans_b, c.m, c.n, c.k, 1.0f, a.data(), c.trans_a ? c.m : c.k, b.data(),
                                   c.trans_b ? c.k : c.n, 0.0f, out.data(), c.n);
            });
            return out;
        };
        EXPECT_TRUE(product(1) == product(2)) << c.m << "x" << c.n << "x" << c.k;
    }
}

RC_GTEST_PROP(ShapeErrors, MatmulMismatchNamesOpAndShapes, ()) {
    const std::size_t n = *genDim(), k = *genDim(), m = *genDim();
    std::size_t k2 = *uniformIn<std::size_t>(1, max_dim);
    if (k2 >= k) ++k2;  // any inner dim but k
    const Shape sa{n, k}, sb{k2, m};
    const Var<double> a = leaf(Array(xt::ones<double>(sa)));
    const Var<double> b = leaf(Array(xt::ones<double>(sb)));
    checkShapeError([&] { matmul(a, b); }, "matmul", sa, sb);
    // Not 2-D.
    const Shape s3 = *genShape(3, 4);
    const Var<double> c = leaf(Array(xt::ones<double>(s3)));
    checkShapeError([&] { matmul(c, a); }, "matmul", s3, sa);
    const Shape s1{k};
    const Var<double> v = leaf(Array(xt::ones<double>(s1)));
    checkShapeError([&] { matmul(a, v); }, "matmul", sa, s1);
}

// ---------------------------------------------------------------- log_softmax

RC_GTEST_PROP(LogSoftmax, MatchesReference, ()) {
    const Array x = *genArray(*genShape(), anywhere(-3, 3));
    const std::ptrdiff_t axis = *genAxis(x.dimension());
    const Var<double> y = log_softmax(leaf(x), axis);
    checkClose(y.value(), logSoftmaxReference(x, axis), value_tolerance, "log_softmax");
    checkGradients([&](const Inputs& in) { return log_softmax(in[0], axis); }, {leaf(x)});
    // The default axis is the last one.
    checkClose(log_softmax(leaf(x)).value(), logSoftmaxReference(x, -1), value_tolerance, "log_softmax default axis");
}

// Shifting every input by a constant changes nothing, even far beyond where exp overflows.
RC_GTEST_PROP(LogSoftmax, StableForLargeInputs, ()) {
    const Array x = *genArray(*genShape(), anywhere(-3, 3));
    const std::ptrdiff_t axis = *genAxis(x.dimension());
    const double shift = *rc::gen::element(-1000.0, 800.0, 1000.0);
    const Var<double> shifted = leaf(x + shift);
    const Var<double> y = log_softmax(shifted, axis);
    checkClose(y.value(), logSoftmaxReference(x, axis), 1e-10, "log_softmax of shifted input");
    Var<double> loss = sum(y * 0.5);
    loss.backward();
    for (double g : shifted.grad()) RC_ASSERT(std::isfinite(g));
}

// A linear layer and the cross-entropy of its output, composed of the ops above:
// loss = -mean(sum(log_softmax(x W + b) * onehot, 1)).
RC_GTEST_PROP(Composite, LinearCrossEntropyPassesGradcheck, ()) {
    const std::size_t batch = *genDim(), features = *genDim(), classes = *uniformIn<std::size_t>(2, max_dim + 1);
    const Array x = *genArray({batch, features}, anywhere(-2, 2));
    const Array w = *genArray({features, classes}, anywhere(-1, 1));
    const Array b = *genArray({classes}, anywhere(-1, 1));
    Array onehot = xt::zeros<double>({batch, classes});
    for (std::size_t i = 0; i < batch; ++i) onehot(i, *uniformIn<std::size_t>(0, classes)) = 1.0;
    const Var<double> target(onehot);
    checkGradients(
        [&](const Inputs& in) {
            const Var<double> logits = matmul(in[0], in[1]) + in[2];
            return -mean(sum(log_softmax(logits, 1) * target, {1}));
        },
        {leaf(x), leaf(w), leaf(b)});
}
