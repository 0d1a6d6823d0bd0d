// Fused elementwise expressions. relu(a * b + c) on Vars materializes as exactly ONE graph node
// (three leaves: graph size 4) whose value and gradients equal those of the unfused composition
// (each step materialized into its own node), for same-shape and broadcasting inputs; likewise a
// longer chain that uses one leaf twice, which also passes gradcheck, as do trees rooted at ops whose
// backward reads the node's stored output. Then T = float through the
// blocked, vectorized backward (several blocks, a size that is not a multiple of the SIMD width,
// gradients written then accumulated) and through the broadcasting path, against scalar
// reference loops.
#include <gtest/gtest.h>
#include <rapidcheck/gtest.h>

#include <cmath>
#include <functional>
#include <string>
#include <vector>

#include <xtensor/xview.hpp>

#include "autodiff/fused_node.hpp"
#include "tests/generators.hpp"

namespace {

using namespace xgrad_test;
using Inputs = std::vector<Var<double>>;

// Values and gradients of the fused and unfused forms agree to this relative tolerance (they
// differ at most in the order in which broadcast gradients are summed).
constexpr double fused_tolerance = 1e-12;

Var<double> reluAffineFused(const Var<double>& a, const Var<double>& b, const Var<double>& c) {
    Var<double> y = relu(a * b + c);
    return y;
}

Var<double> reluAffineUnfused(const Var<double>& a, const Var<double>& b, const Var<double>& c) {
    Var<double> t1 = a * b;
    Var<double> t2 = t1 + c;
    Var<double> y = relu(t2);
    return y;
}

Var<double> longChainFused(const Var<double>& a, const Var<double>& b, const Var<double>& c) {
    Var<double> y = sigmoid(a) * tanh(b) / (c * c + 1.0) - exp(-a);
    return y;
}

// The same chain, one node per step: 9 nodes.
Var<double> longChainUnfused(const Var<double>& a, const Var<double>& b, const Var<double>& c) {
    Var<double> s = sigmoid(a);
    Var<double> t = tanh(b);
    Var<double> u = s * t;
    Var<double> v = c * c;
    Var<double> w = v + 1.0;
    Var<double> q = u / w;
    Var<double> minus_a = -a;
    Var<double> e = exp(minus_a);
    Var<double> y = q - e;
    return y;
}

using Composition = Var<double> (*)(const Var<double>&, const Var<double>&, const Var<double>&);

// Builds both forms on fresh leaves with the same values, checks the node counts, then compares
// values and the gradients of <seed, y> for every leaf. Returns the fused leaves and output.
std::vector<Var<double>> checkFusedAgainstUnfused(const std::vector<Shape>& shapes, Composition fused,
                                                  Composition unfused, std::size_t unfused_nodes) {
    std::vector<Array> values;
    for (const Shape& s : shapes) values.push_back(*genArray(s, anywhere(-2, 2)));
    const Inputs f_in = {leaf(values[0]), leaf(values[1]), leaf(values[2])};
    const Inputs u_in = {leaf(values[0]), leaf(values[1]), leaf(values[2])};
    const Var<double> y = fused(f_in[0], f_in[1], f_in[2]);
    const Var<double> z = unfused(u_in[0], u_in[1], u_in[2]);
    RC_ASSERT(graph_size(y) == 4u);
    RC_ASSERT(y.node()->inputs.size() == 3u);
    RC_ASSERT(graph_size(z) == unfused_nodes + 3);
    checkClose(y.value(), z.value(), fused_tolerance, "fused value vs unfused");

    const Array seed = *genArray(y.shape(), anywhere(-2, 2));
    y.backward(seed);
    z.backward(seed);
    for (std::size_t k = 0; k < 3; ++k) {
        checkClose(f_in[k].grad(), u_in[k].grad(), fused_tolerance, "gradient of leaf " + std::to_string(k));
    }
    return f_in;
}

rc::Gen<std::vector<Shape>> genSameShapes(std::size_t count) {
    return rc::gen::map(genShape(), [count](const Shape& s) { return std::vector<Shape>(count, s); });
}

}  // namespace

RC_GTEST_PROP(Fused, ReluAffineIsOneNodeEqualToUnfusedSameShape, ()) {
    const auto leaves = checkFusedAgainstUnfused(*genSameShapes(3), reluAffineFused, reluAffineUnfused, 3);
    // And against a scalar reference, so both forms cannot be wrong together.
    const Array& a = leaves[0].value();
    const Array& b = leaves[1].value();
    const Array& c = leaves[2].value();
    checkClose(reluAffineFused(leaves[0], leaves[1], leaves[2]).value(),
               mapValues(broadcastApply(broadcastApply(a, b, std::multiplies<>{}), c, std::plus<>{}),
                         [](double v) { return v > 0 ? v : 0.0; }),
               0.0, "value vs reference");
}

RC_GTEST_PROP(Fused, ReluAffineIsOneNodeEqualToUnfusedBroadcasting, ()) {
    checkFusedAgainstUnfused(*genBroadcastShapes(3), reluAffineFused, reluAffineUnfused, 3);
}

RC_GTEST_PROP(Fused, LongChainIsOneNodeEqualToUnfusedSameShape, ()) {
    checkFusedAgainstUnfused(*genSameShapes(3), longChainFused, longChainUnfused, 9);
}

RC_GTEST_PROP(Fused, LongChainIsOneNodeEqualToUnfusedBroadcasting, ()) {
    checkFusedAgainstUnfused(*genBroadcastShapes(3), longChainFused, longChainUnfused, 9);
}

RC_GTEST_PROP(Fused, LongChainPassesGradcheck, ()) {
    const auto shapes = *genBroadcastShapes(3);
    Inputs in;
    for (const Shape& s : shapes) in.push_back(leaf(*genArray(s, anywhere(-2, 2))));
    checkGradients([](const Inputs& x) { return longChainFused(x[0], x[1], x[2]); }, in);
}

// Whether a materialized tree's backward takes its root's derivative from the node's output, as
// root_adjoints (autodiff/fused_node.hpp) asks: the same bits either way, so only the types tell.
template <class E>
concept ReadsItsOutput = requires(const E& e, const Array& g) { e.adjoints_from_output(g, g); };
using V = const Var<double>&;
static_assert(ReadsItsOutput<decltype(sigmoid(std::declval<V>() * std::declval<V>()))>);
static_assert(ReadsItsOutput<decltype(tanh(std::declval<V>()))>);
static_assert(ReadsItsOutput<decltype(exp(std::declval<V>()))>);
static_assert(ReadsItsOutput<decltype(sqrt(std::declval<V>()))>);
static_assert(!ReadsItsOutput<decltype(relu(std::declval<V>()))>);
static_assert(!ReadsItsOutput<decltype(log(std::declval<V>()))>);

// Trees rooted at an op whose backward reads the node's stored output (sigmoid, tanh, exp, sqrt),
// over an inner expression of all three leaves, broadcasting or not.
RC_GTEST_PROP(Fused, RootsThatReadTheirOutputPassGradcheck, ()) {
    const auto shapes = *genBroadcastShapes(3);
    Inputs in;
    for (const Shape& s : shapes) in.push_back(leaf(*genArray(s, anywhere(-2, 2))));
    checkGradients([](const Inputs& x) -> Var<double> { return sigmoid(x[0] * x[1] + x[2]); }, in);
    checkGradients([](const Inputs& x) -> Var<double> { return tanh(x[0] - x[1] * x[2]); }, in);
    checkGradients([](const Inputs& x) -> Var<double> { return exp(x[0] * x[1] - x[2]); }, in);
    checkGradients([](const Inputs& x) -> Var<double> { return sqrt(x[0] * x[0] + x[1] * x[2] + 5.0); }, in);
}

// A root that reads its output, swept twice (retain_graph): its output is still there, and the
// second sweep adds what the first did. Then seeded with its leaf's own gradient: as with a copy.
TEST(Fused, ARootThatReadsItsOutputGivesTheSameGradientOnEverySweep) {
    const Var<double> a = leaf(Array{0.5, -1.5, 2.0, 0.25}), b = leaf(Array{1.0, 2.0, -0.5, 3.0});
    const Var<double> y = sigmoid(a * b);
    const Array seed = {1.0, -2.0, 0.5, 3.0};
    y.backward(seed, /*retain_graph=*/true);
    const Array first = a.grad();
    y.backward(seed);
    EXPECT_EQ(a.grad(), Array(2.0 * first));

    const Var<double> c = leaf(Array{0.5, -1.5, 2.0, 0.25}), c2 = leaf(Array{0.5, -1.5, 2.0, 0.25});
    const Var<double> z = tanh(c), z2 = tanh(c2);
    z.backward(seed, /*retain_graph=*/true);
    z2.backward(seed, /*retain_graph=*/true);
    const Array copy = c2.grad();
    z.backward(c.grad());
    z2.backward(copy);
    EXPECT_EQ(c.grad(), c2.grad());
}

// A leaf without requires_grad stays a constant of the fused node: no gradient reaches it.
RC_GTEST_PROP(Fused, ConstantLeafGetsNoGradient, ()) {
    const auto shapes = *genBroadcastShapes(3);
    const Array av = *genArray(shapes[0], anywhere(-2, 2));
    const Array bv = *genArray(shapes[1], anywhere(-2, 2));
    const Array cv = *genArray(shapes[2], anywhere(-2, 2));
    const Var<double> a = leaf(av), b = leaf(bv), c(cv);
    const Var<double> a2 = leaf(av), b2 = leaf(bv), c2(cv);
    const Var<double> y = reluAffineFused(a, b, c);
    const Var<double> z = reluAffineUnfused(a2, b2, c2);
    const Array seed = *genArray(y.shape(), anywhere(-2, 2));
    y.backward(seed);
    z.backward(seed);
    RC_ASSERT(!c.has_grad());
    checkClose(a.grad(), a2.grad(), fused_tolerance, "da");
    checkClose(b.grad(), b2.grad(), fused_tolerance, "db");
}

// y.backward(a.grad()): the seed is the very gradient the backward adds a's contribution to. Every
// gradient must be as with a copy of that seed (b's adjoint reads the seed after a's is written).
TEST(Fused, ASeedThatIsALeafsGradientGivesTheGradientsOfItsCopy) {
    const Array av = {0.5, -1.5, 2.0, 0.25}, bv = {1.0, 2.0, -0.5, 3.0}, cv = {0.25, 4.0, 1.5, -2.0};
    const Var<double> a = leaf(av), b = leaf(bv), c = leaf(cv);
    const Var<double> a2 = leaf(av), b2 = leaf(bv), c2 = leaf(cv);
    reluAffineFused(a, b, c).backward(Array{1.0, -2.0, 0.5, 3.0});
    reluAffineFused(a2, b2, c2).backward(Array{1.0, -2.0, 0.5, 3.0});
    const Array seed = a2.grad();
    reluAffineFused(a, b, c).backward(a.grad());
    reluAffineFused(a2, b2, c2).backward(seed);
    EXPECT_EQ(a.grad(), a2.grad());
    EXPECT_EQ(b.grad(), b2.grad());
    EXPECT_EQ(c.grad(), c2.grad());
}

namespace {

using ArrayF = xt::xarray<float>;

Array as_double(const ArrayF& x) { return Array(xt::cast<double>(x)); }
ArrayF toFloat(const Array& x) { return ArrayF(xt::cast<float>(x)); }

double sigmoidRef(double v) { return 1.0 / (1.0 + std::exp(-v)); }

// Float results against a double reference computed from the same float inputs.
constexpr double float_tolerance = 1e-5;

}  // namespace

// rows and cols odd, so the size is odd (never a multiple of the SIMD width) and above the
// 1024-element block of the fused node: 5 to 25 blocks, in the calling thread up to
// fused_parallel_above, or, one case in four, 17 to 51 blocks, all past it, in parallel.
RC_GTEST_PROP(FusedFloat, ManyBlocksMatchScalarLoop, ()) {
    static_assert((2 * 64 + 1) * 129 > xgrad::detail::fused_parallel_above);
    const std::size_t rows = *uniformIn(0, 4) == 0 ? 2 * *uniformIn<std::size_t>(64, 100) + 1
                                                   : 2 * *uniformIn<std::size_t>(16, 50) + 1;
    const std::size_t cols = 2 * *uniformIn<std::size_t>(64, 128) + 1;
    const Shape s{rows, cols};
    const std::size_t n = rows * cols;
    const ArrayF a = toFloat(*genBulkArray(s, anywhere(-2, 2)));
    const ArrayF b = toFloat(*genBulkArray(s, anywhere(-2, 2)));
    const ArrayF c = toFloat(*genBulkArray(s, anywhere(-2, 2)));
    const ArrayF seed = toFloat(*genBulkArray(s, anywhere(-2, 2)));

    {  // relu(a * b + c): on the grid every step is exact in float, so the results are too.
        const Var<float> va(a, true), vb(b, true), vc(c, true);
        const Var<float> y = relu(va * vb + vc);
        RC_ASSERT(graph_size(y) == 4u);
        y.backward(seed);
        Array value = Array::from_shape(s), ga = value, gb = value, gc = value;
        for (std::size_t i = 0; i < n; ++i) {
            const double pre = double(a.data()[i]) * b.data()[i] + c.data()[i];
            const double g = pre > 0 ? seed.data()[i] : 0.0;
            value.data()[i] = pre > 0 ? pre : 0.0;
            ga.data()[i] = g * b.data()[i];
            gb.data()[i] = g * a.data()[i];
            gc.data()[i] = g;
        }
        checkClose(as_double(y.value()), value, 0.0, "float relu(a*b+c) value");
        checkClose(as_double(va.grad()), ga, 0.0, "float relu(a*b+c) da");
        checkClose(as_double(vb.grad()), gb, 0.0, "float relu(a*b+c) db");
        checkClose(as_double(vc.grad()), gc, 0.0, "float relu(a*b+c) dc");
    }

    {  // A longer chain using a three times: its gradient is written once, then added twice.
        const Var<float> va(a, true), vb(b, true), vc(c, true);
        const Var<float> y = sigmoid(va) * tanh(vb) / (vc * vc + 1.0f) - exp(-va) + va * va;
        RC_ASSERT(graph_size(y) == 4u);
        y.backward(seed, /*retain_graph=*/true);
        Array value = Array::from_shape(s), ga = value, gb = value, gc = value;
        for (std::size_t i = 0; i < n; ++i) {
            const double x = a.data()[i], u = b.data()[i], v = c.data()[i], g = seed.data()[i];
            const double sg = sigmoidRef(x), t = std::tanh(u), w = v * v + 1.0;
            value.data()[i] = sg * t / w - std::exp(-x) + x * x;
            ga.data()[i] = g * (sg * (1.0 - sg) * t / w + std::exp(-x) + 2.0 * x);
            gb.data()[i] = g * sg * (1.0 - t * t) / w;
            gc.data()[i] = -g * sg * t * 2.0 * v / (w * w);
        }
        checkClose(as_double(y.value()), value, float_tolerance, "float chain value");
        checkClose(as_double(va.grad()), ga, float_tolerance, "float chain da");
        checkClose(as_double(vb.grad()), gb, float_tolerance, "float chain db");
        checkClose(as_double(vc.grad()), gc, float_tolerance, "float chain dc");
        // A second sweep adds the same gradient again, through the accumulating store (up to
        // rounding: a's three contributions are added one by one).
        const Array first_a = as_double(va.grad());
        y.backward(seed);
        checkClose(as_double(va.grad()), 2.0 * first_a, 1e-6, "float chain da after two backward");
    }

    {  // Roots whose backward reads the stored output, through the blocked, parallel backward.
        const Var<float> va(a, true), vb(b, true), vc(c, true);
        const Var<float> ys = sigmoid(va * vb + vc), yt = tanh(va - vb), ye = exp(va * vc), yr = sqrt(vb * vb + 1.0f);
        ys.backward(seed);
        yt.backward(seed);
        ye.backward(seed);
        yr.backward(seed);
        Array ga = Array::from_shape(s), gb = ga, gc = ga;
        for (std::size_t i = 0; i < n; ++i) {
            const double x = a.data()[i], u = b.data()[i], v = c.data()[i], g = seed.data()[i];
            const double sg = sigmoidRef(x * u + v), t = std::tanh(x - u), e = std::exp(x * v), r = std::sqrt(u * u + 1.0);
            const double ds = g * sg * (1.0 - sg);
            ga.data()[i] = ds * u + g * (1.0 - t * t) + g * e * v;
            gb.data()[i] = ds * x - g * (1.0 - t * t) + g * u / r;
            gc.data()[i] = ds + g * e * x;
        }
        checkClose(as_double(va.grad()), ga, float_tolerance, "float output-read roots da");
        checkClose(as_double(vb.grad()), gb, float_tolerance, "float output-read roots db");
        checkClose(as_double(vc.grad()), gc, float_tolerance, "float output-read roots dc");
    }

    {  // Broadcasting in float: a row vector and a column vector, summed back to their shapes.
        const ArrayF row = xt::view(b, 0, xt::all());
        const ArrayF col = xt::view(c, xt::all(), xt::range(0, 1));
        const Var<float> va(a, true), vb(row, true), vc(col, true);
        const Var<float> y = relu(va * vb + vc);
        RC_ASSERT(graph_size(y) == 4u);
        y.backward(seed);
        Array value = Array::from_shape(s), ga = value;
        Array gb = xt::zeros<double>({cols});
        Array gc = xt::zeros<double>({rows, std::size_t{1}});
        for (std::size_t i = 0; i < rows; ++i) {
            for (std::size_t j = 0; j < cols; ++j) {
                const std::size_t k = i * cols + j;
                const double pre = double(a.data()[k]) * row(j) + col(i, 0);
                const double g = pre > 0 ? seed.data()[k] : 0.0;
                value.data()[k] = pre > 0 ? pre : 0.0;
                ga.data()[k] = g * row(j);
                gb(j) += g * a.data()[k];
                gc(i, 0) += g;
            }
        }
        checkClose(as_double(y.value()), value, 0.0, "float broadcast value");
        checkClose(as_double(va.grad()), ga, 0.0, "float broadcast da");
        // Sums of up to 255 float terms.
        checkClose(as_double(vb.grad()), gb, 1e-4, "float broadcast db");
        checkClose(as_double(vc.grad()), gc, 1e-4, "float broadcast dc");
    }
}
