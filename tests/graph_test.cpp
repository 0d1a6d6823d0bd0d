// The dynamic graph itself: gradients accumulate over repeated backward passes and over every
// use of a Var (including a diamond through intermediate nodes, which needs the topological
// order), NoGrad records nothing, a retained graph can be run again while a freed one refuses,
// zero_grad forgets (keeping the buffer), constants get no gradient, and backward on a non-scalar needs a seed of
// the right shape. Also that gradcheck itself notices a wrong backward, and that freed memory
// is reused under retain_freed_memory.
#include <gtest/gtest.h>
#include <rapidcheck/gtest.h>
#include <sys/resource.h>

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>
#include <vector>

#include "autodiff/address_sanitizer.hpp"
#include "tests/generators.hpp"

namespace {

using namespace xgrad_test;

// A small graph of several nodes over a and b, all of one shape:
// t = a * b, u = exp(t) + a, y = u * u + t.
Var<double> threeNodes(const Var<double>& a, const Var<double>& b) {
    Var<double> t = a * b;
    Var<double> u = exp(t) + a;
    return u * u + t;
}

// The gradients of <seed, threeNodes(a, b)> with respect to a and b, by hand.
std::pair<Array, Array> threeNodesGradients(const Array& a, const Array& b, const Array& seed) {
    const Array t = a * b;
    const Array u = xt::exp(t) + a;
    const Array dy_dt = 2.0 * u * xt::exp(t) + 1.0;
    return {seed * (dy_dt * b + 2.0 * u), seed * dy_dt * a};
}

struct Case {
    Array a;
    Array b;
    Array seed;
};

rc::Gen<Case> genCase() {
    return rc::gen::exec([] {
        const Shape s = *genShape();
        return Case{*genArray(s, anywhere(-1, 1)), *genArray(s, anywhere(-1, 1)), *genArray(s, anywhere(-2, 2))};
    });
}

}  // namespace

RC_GTEST_PROP(Graph, GradientsMatchTheChainRuleByHand, ()) {
    const Case c = *genCase();
    const Var<double> a = leaf(c.a), b = leaf(c.b);
    threeNodes(a, b).backward(c.seed);
    const auto [ga, gb] = threeNodesGradients(c.a, c.b, c.seed);
    checkClose(a.grad(), ga, 1e-12, "da");
    checkClose(b.grad(), gb, 1e-12, "db");
}

// Without zero_grad, a second (and third) backward through a retained graph adds the same
// gradient again (up to rounding: each sweep adds a leaf's contributions one by one).
RC_GTEST_PROP(Graph, BackwardTwiceWithoutZeroingDoublesGradients, ()) {
    const Case c = *genCase();
    const Var<double> a = leaf(c.a), b = leaf(c.b);
    const Var<double> y = threeNodes(a, b);
    y.backward(c.seed, /*retain_graph=*/true);
    const Array ga = a.grad(), gb = b.grad();
    y.backward(c.seed, /*retain_graph=*/true);
    checkClose(a.grad(), 2.0 * ga, 1e-15, "da after two backward");
    checkClose(b.grad(), 2.0 * gb, 1e-15, "db after two backward");
    y.backward(c.seed);
    checkClose(a.grad(), 3.0 * ga, 1e-15, "da after three backward");
}

// b = a + a; c = b * b, as separate nodes: dc/da = 8a; and the same chain fused into one node.
RC_GTEST_PROP(Graph, VarUsedTwiceGetsBothContributions, ()) {
    const Case k = *genCase();
    const Var<double> a = leaf(k.a);
    Var<double> b = a + a;
    Var<double> c = b * b;
    RC_ASSERT(graph_size(c) == 3u);
    c.backward(k.seed);
    checkClose(a.grad(), 8.0 * k.a * k.seed, 0.0, "dc/da through two nodes");

    const Var<double> a2 = leaf(k.a);
    Var<double> fused = (a2 + a2) * (a2 + a2);
    RC_ASSERT(graph_size(fused) == 2u);
    fused.backward(k.seed);
    checkClose(a2.grad(), 8.0 * k.a * k.seed, 1e-15, "dc/da fused");
}

// backward's leaf_finished hears of each leaf once, and only when its gradient is final: the
// gradient it sees then is the one backward ends with. Three nodes take a (t, u and c * a), one
// takes b and one takes c: a hook that fired at a's first consumer would see part of its gradient.
RC_GTEST_PROP(Graph, LeafFinishedHearsOfEachLeafOnceWithItsFinalGradient, ()) {
    const Case k = *genCase();
    const Var<double> a = leaf(k.a), b = leaf(k.b), c = leaf(k.a);
    const Var<double> unused = c * a;
    const Var<double> y = threeNodes(a, b);
    const Var<double> root = y + unused * Var<double>(xt::zeros_like(k.a));
    std::vector<const xgrad::Node<double>*> heard;
    std::vector<Array> seen;  // the gradient each had then
    root.backward(k.seed, false, [&](xgrad::Node<double>& leaf) {
        heard.push_back(&leaf);
        seen.push_back(leaf.has_grad ? leaf.grad : Array());
    });
    RC_ASSERT(heard.size() == 3u);
    for (const auto& v : {a, b, c}) {
        RC_ASSERT(std::count(heard.begin(), heard.end(), v.node().get()) == 1);
        const auto at = std::find(heard.begin(), heard.end(), v.node().get());
        RC_ASSERT(v.has_grad());
        RC_ASSERT(seen[static_cast<std::size_t>(at - heard.begin())] == v.grad());
    }
}

TEST(Graph, ScalarVarUsedTwice) {
    const Var<double> a(Array{3.0}, true);
    Var<double> b = a + a;
    Var<double> c = b * b;
    c.backward();
    EXPECT_EQ(c.value()(0), 36.0);
    EXPECT_EQ(a.grad()(0), 24.0);
}

// A diamond: b feeds two nodes that meet again in y, so b must collect both contributions
// before passing its gradient on. y = 3b + exp(b) with b = 2a: dy/da = 2 (3 + exp(2a)).
RC_GTEST_PROP(Graph, DiamondCollectsBothPathsBeforePassingOn, ()) {
    const Case k = *genCase();
    const Var<double> a = leaf(k.a);
    Var<double> b = a + a;
    Var<double> left = b * 3.0;
    Var<double> right = exp(b);
    Var<double> y = left + right;
    RC_ASSERT(graph_size(y) == 5u);
    y.backward(k.seed);
    checkClose(a.grad(), k.seed * 2.0 * (3.0 + xt::exp(2.0 * k.a)), 1e-12, "dy/da");
}

// Inside NoGrad nothing is recorded, even from inputs that require a gradient; the previous mode
// comes back when the scope ends, also when scopes nest.
RC_GTEST_PROP(Graph, NoGradRecordsNothing, ()) {
    const Case k = *genCase();
    const Var<double> a = leaf(k.a), b = leaf(k.b);
    RC_ASSERT(xgrad::grad_enabled());
    {
        xgrad::NoGrad outer;
        Var<double> y = relu(a * b + 1.0);
        RC_ASSERT(!y.requires_grad());
        RC_ASSERT(graph_size(y) == 1u);
        checkClose(y.value(), xt::maximum(k.a * k.b + 1.0, 0.0), 0.0, "value under NoGrad");
        {
            xgrad::NoGrad inner;
            RC_ASSERT(!xgrad::grad_enabled());
        }
        RC_ASSERT(!xgrad::grad_enabled());
        Var<double> z = threeNodes(a, b);
        RC_ASSERT(graph_size(z) == 1u);
        RC_ASSERT_THROWS_AS(z.backward(k.seed), std::logic_error);
    }
    RC_ASSERT(xgrad::grad_enabled());
    RC_ASSERT(graph_size(threeNodes(a, b)) == 5u);
}

// A graph retained by backward can be run again; with another seed it gives that seed's gradient.
RC_GTEST_PROP(Graph, RetainedGraphRunsAgain, ()) {
    const Case k = *genCase();
    const Array other_seed = *genArray(xgrad::to_shape(k.a.shape()), anywhere(-2, 2));
    Var<double> a = leaf(k.a), b = leaf(k.b);
    const Var<double> y = threeNodes(a, b);
    y.backward(k.seed, /*retain_graph=*/true);
    a.zero_grad();
    b.zero_grad();
    y.backward(other_seed);
    const auto [ga, gb] = threeNodesGradients(k.a, k.b, other_seed);
    checkClose(a.grad(), ga, 1e-12, "da, second run");
    checkClose(b.grad(), gb, 1e-12, "db, second run");
}

// Without retain_graph the graph is freed: a second backward, from the output or from an
// intermediate, throws.
TEST(Graph, SecondBackwardThroughFreedGraphThrows) {
    const Var<double> a(Array{0.5, -1.0}, true);
    const Var<double> b(Array{2.0, 0.25}, true);
    Var<double> t = a * b;
    Var<double> y = exp(t) + a;
    const Array seed{1.0, 1.0};
    y.backward(seed);
    EXPECT_THROW(y.backward(seed), std::logic_error);
    EXPECT_THROW(t.backward(seed), std::logic_error);
    try {
        y.backward(seed);
    } catch (const std::logic_error& e) {
        EXPECT_NE(std::string(e.what()).find("retain_graph"), std::string::npos) << e.what();
    }
}

// zero_grad forgets the gradient: grad() then throws, and the next backward writes afresh, into
// the same buffer (through the separate nodes and through one fused node alike, broadcasting or not).
RC_GTEST_PROP(Graph, ZeroGradForgets, ()) {
    const Case k = *genCase();
    const Var<double> a = leaf(k.a), b = leaf(k.b);
    RC_ASSERT(!a.has_grad());
    threeNodes(a, b).backward(k.seed);
    RC_ASSERT(a.has_grad());
    const double* buffer = a.grad().data();
    Var<double> a_handle = a;
    a_handle.zero_grad();
    RC_ASSERT(!a.has_grad());
    RC_ASSERT_THROWS_AS(a.grad(), std::logic_error);
    threeNodes(a, b).backward(k.seed);
    const auto [ga, gb] = threeNodesGradients(k.a, k.b, k.seed);
    checkClose(a.grad(), ga, 1e-12, "da after zero_grad");
    checkClose(b.grad(), 2.0 * gb, 1e-12, "db, not zeroed, accumulates");
    RC_ASSERT(a.grad().data() == buffer);
    a_handle.zero_grad();
    Var<double>(relu(a * b + 1.0)).backward(k.seed);
    checkClose(a.grad(), xt::where(k.a * k.b + 1.0 > 0.0, k.seed * k.b, 0.0), 1e-12, "fused da after zero_grad");
    RC_ASSERT(a.grad().data() == buffer);
    a_handle.zero_grad();
    const Var<double> scale = leaf(Array(2.0));  // 0-d: a fused node on the broadcasting path
    Var<double>(a * scale).backward(k.seed);
    checkClose(a.grad(), 2.0 * k.seed, 1e-12, "broadcast da after zero_grad");
    RC_ASSERT(a.grad().data() == buffer);
}

// A gradient handed over as an rvalue array becomes the node's gradient without a copy.
TEST(Graph, AnRvalueGradientIsMovedIn) {
    xgrad::Node<double> node;
    node.value = Array{1.0, 2.0, 3.0};
    Array contribution{0.5, 0.25, 0.125};
    const double* buffer = contribution.data();
    xgrad::accumulate_grad(node, std::move(contribution));
    EXPECT_EQ(node.grad.data(), buffer);
    EXPECT_EQ(node.grad, (Array{0.5, 0.25, 0.125}));
    xgrad::accumulate_grad(node, Array{1.0, 1.0, 1.0});
    EXPECT_EQ(node.grad, (Array{1.5, 1.25, 1.125})) << "a live gradient is added to";
}

// retain_freed_memory: a large block, freed and allocated again, comes back without faulting in
// fresh pages (64 MiB of them would be 16,384 minor faults).
TEST(Memory, RetainedFreedMemoryIsReusedWithoutPageFaults) {
#if defined(XGRAD_ADDRESS_SANITIZER)
    GTEST_SKIP() << "AddressSanitizer's allocator replaces glibc's, which the policy configures";
#else
    xgrad::retain_freed_memory();
    const auto fill_and_free = [] {
        std::vector<char> block(std::size_t{64} << 20, 1);
        asm volatile("" : : "g"(block.data()) : "memory");  // the fill must happen
    };
    const auto minor_faults = [] {
        rusage usage{};
        getrusage(RUSAGE_SELF, &usage);
        return usage.ru_minflt;
    };
    fill_and_free();
    const long before = minor_faults();
    fill_and_free();
    EXPECT_LT(minor_faults() - before, 256);
#endif
}

// A Var without requires_grad is a constant: no gradient reaches it, the others are unchanged.
RC_GTEST_PROP(Graph, ConstantsGetNoGradient, ()) {
    const Case k = *genCase();
    const Var<double> a = leaf(k.a);
    const Var<double> b(k.b);
    threeNodes(a, b).backward(k.seed);
    RC_ASSERT(!b.has_grad());
    checkClose(a.grad(), threeNodesGradients(k.a, k.b, k.seed).first, 1e-12, "da");
    // Only constants: nothing to differentiate, so backward refuses.
    const Var<double> c(k.a);
    RC_ASSERT_THROWS_AS(threeNodes(c, b).backward(k.seed), std::logic_error);
}

// backward() without a seed is only for a single-element Var; a seed must have the Var's shape.
RC_GTEST_PROP(Graph, NonScalarBackwardNeedsASeedOfItsShape, ()) {
    const Shape s = *genShape();
    RC_PRE(xgrad::element_count(s) > 1);
    const Var<double> a = leaf(*genArray(s, anywhere(-1, 1)));
    Var<double> y = exp(a) * 2.0;
    try {
        y.backward();
        RC_FAIL("backward() on a non-scalar did not throw");
    } catch (const xgrad::ShapeError& e) {
        RC_ASSERT(std::string(e.what()).find(xgrad::shape_str(s)) != std::string::npos);
    }
    Shape wrong = s;
    wrong.push_back(2);
    RC_ASSERT_THROWS_AS(y.backward(Array(xt::ones<double>(wrong))), xgrad::ShapeError);
    RC_ASSERT(!a.has_grad());
}

// gradcheck is able to fail: an op whose backward passes on twice the right gradient is caught,
// and an input without requires_grad is refused.
TEST(Gradcheck, NoticesAWrongBackward) {
    const Var<double> x(Array{{0.5, -1.5, 2.0}, {1.0, 0.25, -0.75}}, true);
    auto wrong_double = [](const std::vector<Var<double>>& in) {
        const Var<double>& v = in[0];
        return Var<double>::from_op(2.0 * v.value(), "wrong_double", {v.node()},
                                    [](const xgrad::Node<double>& self, const Array& grad_out) {
                                        xgrad::accumulate_grad(*self.inputs[0], 4.0 * grad_out);
                                    });
    };
    const auto results = xgrad::gradcheck(wrong_double, {x});
    ASSERT_EQ(results.size(), 1u);
    EXPECT_GT(results[0].worst_error, 0.1);
    EXPECT_NEAR(results[0].numeric / results[0].analytic, 0.5, 1e-6);

    auto right = [](const std::vector<Var<double>>& in) -> Var<double> { return in[0] * 2.0; };
    EXPECT_LE(xgrad::gradcheck(right, {x})[0].worst_error, gradcheck_tolerance);
    EXPECT_THROW(xgrad::gradcheck(right, {Var<double>(Array{1.0})}), std::invalid_argument);
}
