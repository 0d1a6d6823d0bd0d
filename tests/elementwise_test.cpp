// The elementwise ops, one property each, on random shapes of rank 1 to 4: the forward value
// against a scalar reference (under numpy broadcasting for add, sub, mul, div) and every input's
// gradient against central differences (gradcheck, worst error <= 1e-6), with values kept away
// from the points where the op is not differentiable. Also the scalar-operand forms
// (x * 2.5, 1.0 / x, ...) and the ShapeError a broadcast mismatch raises.
#include <gtest/gtest.h>
#include <rapidcheck/gtest.h>

#include <cmath>
#include <functional>
#include <string>
#include <vector>

#include "tests/generators.hpp"

namespace {

using namespace xgrad_test;
using Inputs = std::vector<Var<double>>;

// Transcendental functions may differ from libm by an ulp or two when vectorized.
constexpr double value_tolerance = 1e-13;

// op: (Var, Var) -> expression; ref: the same function on two doubles.
template <class Op, class Ref>
void checkBinary(Op op, Ref ref, Domain left, Domain right) {
    const auto shapes = *genBroadcastShapes(2);
    const Array a = *genArray(shapes[0], left);
    const Array b = *genArray(shapes[1], right);
    const Var<double> y = op(leaf(a), leaf(b));
    checkClose(y.value(), broadcastApply(a, b, ref), value_tolerance, "value");
    checkGradients([&](const Inputs& in) -> Var<double> { return op(in[0], in[1]); }, {leaf(a), leaf(b)});
}

// op: Var -> expression; ref: the same function on one double.
template <class Op, class Ref>
void checkUnary(Op op, Ref ref, Domain domain) {
    const Array x = *genArray(*genShape(), domain);
    const Var<double> y = op(leaf(x));
    checkClose(y.value(), mapValues(x, ref), value_tolerance, "value");
    checkGradients([&](const Inputs& in) -> Var<double> { return op(in[0]); }, {leaf(x)});
}

double sigmoidRef(double v) { return 1.0 / (1.0 + std::exp(-v)); }

}  // namespace

RC_GTEST_PROP(Elementwise, AddBroadcasts, ()) {
    checkBinary([](const auto& a, const auto& b) { return a + b; }, std::plus<>{}, anywhere(-3, 3), anywhere(-3, 3));
}

RC_GTEST_PROP(Elementwise, SubBroadcasts, ()) {
    checkBinary([](const auto& a, const auto& b) { return a - b; }, std::minus<>{}, anywhere(-3, 3), anywhere(-3, 3));
}

RC_GTEST_PROP(Elementwise, MulBroadcasts, ()) {
    checkBinary([](const auto& a, const auto& b) { return a * b; }, std::multiplies<>{}, anywhere(-3, 3),
                anywhere(-3, 3));
}

RC_GTEST_PROP(Elementwise, DivBroadcasts, ()) {
    checkBinary([](const auto& a, const auto& b) { return a / b; }, std::divides<>{}, anywhere(-3, 3),
                awayFromZero(0.5, 2));
}

RC_GTEST_PROP(Elementwise, Neg, ()) {
    checkUnary([](const auto& x) { return -x; }, [](double v) { return -v; }, anywhere(-3, 3));
}

RC_GTEST_PROP(Elementwise, Exp, ()) {
    checkUnary([](const auto& x) { return exp(x); }, [](double v) { return std::exp(v); }, anywhere(-2, 2));
}

RC_GTEST_PROP(Elementwise, LogOfPositive, ()) {
    checkUnary([](const auto& x) { return log(x); }, [](double v) { return std::log(v); }, anywhere(0.25, 4));
}

RC_GTEST_PROP(Elementwise, SqrtOfPositive, ()) {
    checkUnary([](const auto& x) { return sqrt(x); }, [](double v) { return std::sqrt(v); }, anywhere(0.25, 4));
}

RC_GTEST_PROP(Elementwise, PowByScalarOfPositiveBase, ()) {
    const double p = *rc::gen::element(-2.5, -1.0, 0.5, 1.5, 2.0, 3.0);
    checkUnary([p](const auto& x) { return pow(x, p); }, [p](double v) { return std::pow(v, p); }, anywhere(0.5, 2));
}

RC_GTEST_PROP(Elementwise, Square, ()) {
    checkUnary([](const auto& x) { return square(x); }, [](double v) { return v * v; }, anywhere(-3, 3));
}

RC_GTEST_PROP(Elementwise, AbsAwayFromZero, ()) {
    checkUnary([](const auto& x) { return abs(x); }, [](double v) { return std::abs(v); }, awayFromZero(0.125, 3));
}

RC_GTEST_PROP(Elementwise, Tanh, ()) {
    checkUnary([](const auto& x) { return tanh(x); }, [](double v) { return std::tanh(v); }, anywhere(-3, 3));
}

RC_GTEST_PROP(Elementwise, Sigmoid, ()) {
    checkUnary([](const auto& x) { return sigmoid(x); }, sigmoidRef, anywhere(-4, 4));
}

RC_GTEST_PROP(Elementwise, ReluAwayFromZero, ()) {
    checkUnary([](const auto& x) { return relu(x); }, [](double v) { return v > 0 ? v : 0.0; },
               awayFromZero(0.125, 3));
}

// Every form with a plain number as one operand, on either side.
RC_GTEST_PROP(Elementwise, ScalarOperandForms, ()) {
    const Array x = *genArray(*genShape(), awayFromZero(0.25, 3));
    const double c = *rc::gen::element(-2.5, -0.75, 0.5, 1.25, 3.0);
    struct Form {
        std::string name;
        std::function<Var<double>(const Var<double>&)> op;
        std::function<double(double)> ref;
    };
    const std::vector<Form> forms = {
        {"x + c", [c](const Var<double>& v) -> Var<double> { return v + c; }, [c](double v) { return v + c; }},
        {"c + x", [c](const Var<double>& v) -> Var<double> { return c + v; }, [c](double v) { return c + v; }},
        {"x - c", [c](const Var<double>& v) -> Var<double> { return v - c; }, [c](double v) { return v - c; }},
        {"c - x", [c](const Var<double>& v) -> Var<double> { return c - v; }, [c](double v) { return c - v; }},
        {"x * c", [c](const Var<double>& v) -> Var<double> { return v * c; }, [c](double v) { return v * c; }},
        {"c * x", [c](const Var<double>& v) -> Var<double> { return c * v; }, [c](double v) { return c * v; }},
        {"x / c", [c](const Var<double>& v) -> Var<double> { return v / c; }, [c](double v) { return v / c; }},
        {"c / x", [c](const Var<double>& v) -> Var<double> { return c / v; }, [c](double v) { return c / v; }},
        {"x * 2 (int)", [](const Var<double>& v) -> Var<double> { return v * 2; }, [](double v) { return v * 2; }},
        {"1.0f / x (float)", [](const Var<double>& v) -> Var<double> { return 1.0f / v; },
         [](double v) { return 1.0 / v; }},
    };
    for (const Form& form : forms) {
        const Var<double> y = form.op(leaf(x));
        checkClose(y.value(), mapValues(x, form.ref), value_tolerance, form.name);
        checkGradients([&](const Inputs& in) { return form.op(in[0]); }, {leaf(x)}, form.name);
    }
}

// Shapes that do not broadcast are refused when the expression is built, by every binary op,
// with a message naming the op and both shapes; also when the operand is itself an expression.
RC_GTEST_PROP(ShapeErrors, BroadcastMismatchNamesOpAndShapes, ()) {
    const auto [sa, sb] = *genIncompatibleShapes();
    const Var<double> a = leaf(Array(xt::ones<double>(sa)));
    const Var<double> b = leaf(Array(xt::ones<double>(sb)));
    checkShapeError([&] { Var<double> y = a + b; }, "add", sa, sb);
    checkShapeError([&] { Var<double> y = a - b; }, "sub", sa, sb);
    checkShapeError([&] { Var<double> y = a * b; }, "mul", sa, sb);
    checkShapeError([&] { Var<double> y = a / b; }, "div", sa, sb);
    checkShapeError([&] { Var<double> y = exp(a * 2.0) * relu(b); }, "mul", sa, sb);
}

// Saturated inputs give exact limits, never NaN or inf (e^800 overflows inside sigmoid).
TEST(Elementwise, SigmoidAndTanhSaturateWithoutNaN) {
    const Var<double> x(Array{-800.0, -40.0, 0.0, 40.0, 800.0}, true);
    Var<double> s = sigmoid(x);
    Var<double> t = tanh(x);
    EXPECT_EQ(s.value()(0), 0.0);
    EXPECT_EQ(s.value()(2), 0.5);
    EXPECT_EQ(s.value()(4), 1.0);
    EXPECT_EQ(t.value()(0), -1.0);
    EXPECT_EQ(t.value()(4), 1.0);
    Var<double> y = s + t;
    y.backward(Array(xt::ones<double>({5})));
    for (double g : x.grad()) EXPECT_TRUE(std::isfinite(g));
    EXPECT_EQ(x.grad()(0), 0.0);
    EXPECT_DOUBLE_EQ(x.grad()(2), 1.25);  // sigmoid'(0) + tanh'(0)
}
