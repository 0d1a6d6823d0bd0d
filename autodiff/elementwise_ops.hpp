// The elementwise ops. Each is defined once: its value and its partial derivatives side by side,
// as lazy xtensor expressions. The functions at the end build expression trees from Vars,
// trees and scalars; assigning a tree to a Var evaluates it as one fused graph node.
#pragma once

#include <xtensor/xmath.hpp>
#include <xtensor/xoperation.hpp>

#include "autodiff/expression.hpp"
#include "autodiff/fused_node.hpp"

namespace xgrad {

namespace ops {

// Every partial is applied to the incoming gradient g, so each returns g * d(op)/d(operand).
// Operands are forwarded once; a second use goes through reuse<X>() (see expression.hpp).
// An op whose derivative is a function of its own value also gives grad_from_output(g, y): a
// fused node rooted at it reads its stored output y rather than recomputing the op (see
// UnaryExpr::adjoints_from_output).

template <class T>
struct Add {
    static constexpr const char* name = "add";
    template <class A, class B>
    auto value(A&& a, B&& b) const { return std::forward<A>(a) + std::forward<B>(b); }
    template <class G, class A, class B>
    kept_t<G> grad_left(G&& g, A&&, B&&) const { return std::forward<G>(g); }
    template <class G, class A, class B>
    kept_t<G> grad_right(G&& g, A&&, B&&) const { return std::forward<G>(g); }
};

template <class T>
struct Sub {
    static constexpr const char* name = "sub";
    template <class A, class B>
    auto value(A&& a, B&& b) const { return std::forward<A>(a) - std::forward<B>(b); }
    template <class G, class A, class B>
    kept_t<G> grad_left(G&& g, A&&, B&&) const { return std::forward<G>(g); }
    template <class G, class A, class B>
    auto grad_right(G&& g, A&&, B&&) const { return -std::forward<G>(g); }
};

template <class T>
struct Mul {
    static constexpr const char* name = "mul";
    template <class A, class B>
    auto value(A&& a, B&& b) const { return std::forward<A>(a) * std::forward<B>(b); }
    template <class G, class A, class B>
    auto grad_left(G&& g, A&&, B&& b) const { return std::forward<G>(g) * std::forward<B>(b); }
    template <class G, class A, class B>
    auto grad_right(G&& g, A&& a, B&&) const { return std::forward<G>(g) * std::forward<A>(a); }
};

template <class T>
struct Div {
    static constexpr const char* name = "div";
    template <class A, class B>
    auto value(A&& a, B&& b) const { return std::forward<A>(a) / std::forward<B>(b); }
    template <class G, class A, class B>
    auto grad_left(G&& g, A&&, B&& b) const { return std::forward<G>(g) / std::forward<B>(b); }
    // d(a/b)/db = -a/b^2, written as -(g * a / b) / b so no b^2 can overflow first.
    template <class G, class A, class B>
    auto grad_right(G&& g, A&& a, B&& b) const {
        return -(std::forward<G>(g) * std::forward<A>(a) / reuse<B>(b)) / std::forward<B>(b);
    }
};

template <class T>
struct Neg {
    template <class X>
    auto value(X&& x) const { return -std::forward<X>(x); }
    template <class G, class X>
    auto grad(G&& g, X&&) const { return -std::forward<G>(g); }
};

template <class T>
struct Exp {
    template <class X>
    auto value(X&& x) const { return xt::exp(std::forward<X>(x)); }
    template <class G, class X>
    auto grad(G&& g, X&& x) const { return grad_from_output(std::forward<G>(g), value(std::forward<X>(x))); }
    template <class G, class Y>
    auto grad_from_output(G&& g, Y&& y) const { return std::forward<G>(g) * std::forward<Y>(y); }
};

template <class T>
struct Log {
    template <class X>
    auto value(X&& x) const { return xt::log(std::forward<X>(x)); }
    template <class G, class X>
    auto grad(G&& g, X&& x) const { return std::forward<G>(g) / std::forward<X>(x); }
};

template <class T>
struct Sqrt {
    template <class X>
    auto value(X&& x) const { return xt::sqrt(std::forward<X>(x)); }
    template <class G, class X>
    auto grad(G&& g, X&& x) const { return grad_from_output(std::forward<G>(g), value(std::forward<X>(x))); }
    template <class G, class Y>
    auto grad_from_output(G&& g, Y&& y) const { return std::forward<G>(g) * T(0.5) / std::forward<Y>(y); }
};

// x^p for a fixed scalar p.
template <class T>
struct Pow {
    T p{};
    template <class X>
    auto value(X&& x) const { return xt::pow(std::forward<X>(x), p); }
    template <class G, class X>
    auto grad(G&& g, X&& x) const { return std::forward<G>(g) * p * xt::pow(std::forward<X>(x), p - T(1)); }
};

template <class T>
struct Square {
    template <class X>
    auto value(X&& x) const { return xt::square(std::forward<X>(x)); }
    template <class G, class X>
    auto grad(G&& g, X&& x) const { return std::forward<G>(g) * T(2) * std::forward<X>(x); }
};

// The derivative at 0 is taken as 0, as torch does.
template <class T>
struct Abs {
    template <class X>
    auto value(X&& x) const { return xt::abs(std::forward<X>(x)); }
    template <class G, class X>
    auto grad(G&& g, X&& x) const {
        // sign(x) as (x > 0) - (x < 0): xt::sign has no SIMD kernel, which the fused backward needs.
        auto positive = xt::where(reuse<X>(x) > T(0), T(1), T(0));
        return std::forward<G>(g) * (std::move(positive) - xt::where(std::forward<X>(x) < T(0), T(1), T(0)));
    }
};

template <class T>
struct Tanh {
    template <class X>
    auto value(X&& x) const { return xt::tanh(std::forward<X>(x)); }
    template <class G, class X>
    auto grad(G&& g, X&& x) const { return grad_from_output(std::forward<G>(g), value(std::forward<X>(x))); }
    template <class G, class Y>
    auto grad_from_output(G&& g, Y&& y) const { return std::forward<G>(g) * (T(1) - xt::square(std::forward<Y>(y))); }
};

// 1 / (1 + e^-x): for very negative x, e^-x overflows to inf and the value is exactly 0, no NaN.
template <class T>
struct Sigmoid {
    template <class X>
    auto value(X&& x) const { return T(1) / (T(1) + xt::exp(-std::forward<X>(x))); }
    template <class G, class X>
    auto grad(G&& g, X&& x) const { return grad_from_output(std::forward<G>(g), value(std::forward<X>(x))); }
    template <class G, class Y>
    auto grad_from_output(G&& g, Y&& y) const {
        return std::forward<G>(g) * (T(1) - reuse<Y>(y)) * std::forward<Y>(y);
    }
};

// The derivative at 0 is taken as 0, as torch does.
template <class T>
struct Relu {
    template <class X>
    auto value(X&& x) const { return xt::maximum(std::forward<X>(x), T(0)); }
    template <class G, class X>
    auto grad(G&& g, X&& x) const { return xt::where(std::forward<X>(x) > T(0), std::forward<G>(g), T(0)); }
};

}  // namespace ops

template <Operand A, Operand B>
auto operator+(const A& a, const B& b) { return make_binary<ops::Add>(a, b); }
template <Operand A, Scalar S>
auto operator+(const A& a, S s) { return make_binary<ops::Add>(a, s); }
template <Scalar S, Operand B>
auto operator+(S s, const B& b) { return make_binary<ops::Add>(s, b); }

template <Operand A, Operand B>
auto operator-(const A& a, const B& b) { return make_binary<ops::Sub>(a, b); }
template <Operand A, Scalar S>
auto operator-(const A& a, S s) { return make_binary<ops::Sub>(a, s); }
template <Scalar S, Operand B>
auto operator-(S s, const B& b) { return make_binary<ops::Sub>(s, b); }

template <Operand A, Operand B>
auto operator*(const A& a, const B& b) { return make_binary<ops::Mul>(a, b); }
template <Operand A, Scalar S>
auto operator*(const A& a, S s) { return make_binary<ops::Mul>(a, s); }
template <Scalar S, Operand B>
auto operator*(S s, const B& b) { return make_binary<ops::Mul>(s, b); }

template <Operand A, Operand B>
auto operator/(const A& a, const B& b) { return make_binary<ops::Div>(a, b); }
template <Operand A, Scalar S>
auto operator/(const A& a, S s) { return make_binary<ops::Div>(a, s); }
template <Scalar S, Operand B>
auto operator/(S s, const B& b) { return make_binary<ops::Div>(s, b); }

template <Operand X>
auto operator-(const X& x) { return make_unary<ops::Neg>(x); }
template <Operand X>
auto exp(const X& x) { return make_unary<ops::Exp>(x); }
template <Operand X>
auto log(const X& x) { return make_unary<ops::Log>(x); }
template <Operand X>
auto sqrt(const X& x) { return make_unary<ops::Sqrt>(x); }
template <Operand X, Scalar S>
auto pow(const X& x, S p) { return make_unary<ops::Pow>(x, {static_cast<element_t<X>>(p)}); }
template <Operand X>
auto square(const X& x) { return make_unary<ops::Square>(x); }
template <Operand X>
auto abs(const X& x) { return make_unary<ops::Abs>(x); }
template <Operand X>
auto tanh(const X& x) { return make_unary<ops::Tanh>(x); }
template <Operand X>
auto sigmoid(const X& x) { return make_unary<ops::Sigmoid>(x); }
template <Operand X>
auto relu(const X& x) { return make_unary<ops::Relu>(x); }

}  // namespace xgrad
