// Compile-time expression trees over Vars: an elementwise chain such as relu(a * b + c) is a
// tree type, not a chain of graph nodes. Each tree knows
//   - value():        its forward value as ONE lazy xtensor expression over the leaves' values;
//   - adjoints(g):    for every leaf, the lazy xtensor expression of its gradient contribution
//                     given the output gradient g (chain rule composed at compile time,
//                     intermediates recomputed from the leaves rather than stored);
//   - shape():        its broadcast shape, checked when the tree is built.
// fused_node.hpp turns a tree into one graph node.
#pragma once

#include <concepts>
#include <memory>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include <xtensor/xarray.hpp>

#include "autodiff/shape.hpp"
#include "autodiff/var.hpp"

namespace xgrad {

template <class E>
concept Expression = requires { typename std::remove_cvref_t<E>::is_expression; };

template <class X>
struct is_var : std::false_type {};
template <class T>
struct is_var<Var<T>> : std::true_type {};

// What elementwise ops accept: Vars and unevaluated trees.
template <class X>
concept Operand = Expression<X> || is_var<std::remove_cvref_t<X>>::value;

template <class X>
concept Scalar = std::is_arithmetic_v<std::remove_cvref_t<X>>;

// One leaf's gradient contribution: the leaf and a lazy expression of the output's shape.
template <class T, class E>
struct Adjoint {
    Var<T> leaf;
    E expr;
};

// How a lazy operand is held by the expression built on it: a named container by reference,
// a temporary expression by value (a reference to it would dangle).
template <class X>
using kept_t = std::conditional_t<std::is_lvalue_reference_v<X>, X, std::remove_cvref_t<X>>;

// Passes a forwarding parameter on while keeping it usable: use for every use but the last.
template <class X>
kept_t<X> reuse(std::remove_reference_t<X>& x) {
    return x;
}

template <class T>
class LeafExpr {
public:
    using is_expression = void;
    using value_type = T;

    explicit LeafExpr(Var<T> var) : var_(std::move(var)) {}

    const xt::xarray<T>& value() const { return var_.value(); }
    Shape shape() const { return var_.shape(); }
    bool requires_grad() const { return var_.requires_grad(); }
    bool all_leaves_have_shape(const Shape& s) const { return var_.shape() == s; }
    void collect_inputs(std::vector<std::shared_ptr<Node<T>>>& out) const { out.push_back(var_.node()); }

    template <class G>
    auto adjoints(G&& g) const {
        return std::tuple<Adjoint<T, G>>(Adjoint<T, G>{var_, std::forward<G>(g)});
    }

private:
    Var<T> var_;
};

template <class T>
class ScalarExpr {
public:
    using is_expression = void;
    using value_type = T;

    explicit ScalarExpr(T c) : c_(c) {}

    T value() const { return c_; }
    Shape shape() const { return {}; }
    bool requires_grad() const { return false; }
    bool all_leaves_have_shape(const Shape&) const { return true; }
    void collect_inputs(std::vector<std::shared_ptr<Node<T>>>&) const {}

    template <class G>
    std::tuple<> adjoints(G&&) const {
        return {};
    }

private:
    T c_;
};

// Op provides value(x) and grad(g, x) = g * op'(x), both as lazy xtensor expressions.
template <class Op, class E>
class UnaryExpr {
public:
    using is_expression = void;
    using value_type = typename E::value_type;

    UnaryExpr(Op op, E e) : op_(std::move(op)), e_(std::move(e)) {}

    auto value() const { return op_.value(e_.value()); }
    Shape shape() const { return e_.shape(); }
    bool requires_grad() const { return e_.requires_grad(); }
    bool all_leaves_have_shape(const Shape& s) const { return e_.all_leaves_have_shape(s); }
    void collect_inputs(std::vector<std::shared_ptr<Node<value_type>>>& out) const { e_.collect_inputs(out); }

    template <class G>
    auto adjoints(G&& g) const {
        return e_.adjoints(op_.grad(std::forward<G>(g), e_.value()));
    }
    // The same adjoints, where this op is the root of a materialized tree and its derivative a
    // function of its value: y is the tree's stored output, so the op is not computed again
    // (sigmoid's backward would otherwise take two exponentials an element).
    template <class G, class Y>
        requires requires(const Op& op, G&& g, Y&& y) { op.grad_from_output(std::forward<G>(g), std::forward<Y>(y)); }
    auto adjoints_from_output(G&& g, Y&& y) const {
        return e_.adjoints(op_.grad_from_output(std::forward<G>(g), std::forward<Y>(y)));
    }

private:
    Op op_;
    E e_;
};

// Op provides value(a, b), grad_left(g, a, b) and grad_right(g, a, b); broadcasting is numpy's.
template <class Op, class L, class R>
class BinaryExpr {
public:
    using is_expression = void;
    using value_type = typename L::value_type;
    static_assert(std::is_same_v<value_type, typename R::value_type>,
                  "elementwise ops need operands of one element type");

    BinaryExpr(Op op, L l, R r)
        : op_(std::move(op)), l_(std::move(l)), r_(std::move(r)),
          shape_(broadcast_shapes(Op::name, l_.shape(), r_.shape())) {}

    auto value() const { return op_.value(l_.value(), r_.value()); }
    const Shape& shape() const { return shape_; }
    bool requires_grad() const { return l_.requires_grad() || r_.requires_grad(); }
    bool all_leaves_have_shape(const Shape& s) const {
        return l_.all_leaves_have_shape(s) && r_.all_leaves_have_shape(s);
    }
    void collect_inputs(std::vector<std::shared_ptr<Node<value_type>>>& out) const {
        l_.collect_inputs(out);
        r_.collect_inputs(out);
    }

    template <class G>
    auto adjoints(G&& g) const {
        auto left = l_.adjoints(op_.grad_left(reuse<G>(g), l_.value(), r_.value()));
        auto right = r_.adjoints(op_.grad_right(std::forward<G>(g), l_.value(), r_.value()));
        return std::tuple_cat(std::move(left), std::move(right));
    }

private:
    Op op_;
    L l_;
    R r_;
    Shape shape_;
};

// Vars enter trees as leaves; trees are taken as they are.
template <class T>
LeafExpr<T> as_expression(const Var<T>& v) {
    return LeafExpr<T>(v);
}
template <Expression E>
const E& as_expression(const E& e) {
    return e;
}

template <class X>
using expression_t = std::remove_cvref_t<decltype(as_expression(std::declval<const X&>()))>;

template <class X>
using element_t = typename expression_t<X>::value_type;

template <template <class> class Op, Operand X>
auto make_unary(const X& x, Op<element_t<X>> op = {}) {
    return UnaryExpr<Op<element_t<X>>, expression_t<X>>(std::move(op), as_expression(x));
}

template <template <class> class Op, Operand A, Operand B>
auto make_binary(const A& a, const B& b) {
    return BinaryExpr<Op<element_t<A>>, expression_t<A>, expression_t<B>>({}, as_expression(a), as_expression(b));
}
template <template <class> class Op, Operand A, Scalar S>
auto make_binary(const A& a, S s) {
    using T = element_t<A>;
    return BinaryExpr<Op<T>, expression_t<A>, ScalarExpr<T>>({}, as_expression(a), ScalarExpr<T>(static_cast<T>(s)));
}
template <template <class> class Op, Scalar S, Operand B>
auto make_binary(S s, const B& b) {
    using T = element_t<B>;
    return BinaryExpr<Op<T>, ScalarExpr<T>, expression_t<B>>({}, ScalarExpr<T>(static_cast<T>(s)), as_expression(b));
}

}  // namespace xgrad
