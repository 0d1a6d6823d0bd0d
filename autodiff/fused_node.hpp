// Materializing an expression tree: ONE graph node whose forward is one evaluation of the value
// expression and whose backward evaluates each leaf's fused adjoint expression (reading the node's
// stored output where the root op's derivative is a function of it: sigmoid, tanh, exp, sqrt).
//
// When every leaf has the output's shape (the common case), both run in cache-sized blocks, in
// parallel over blocks, each block with xtensor's own SIMD loads of the expression (what its
// linear assignment does, split across threads). In the backward, every leaf's gradient is
// written while the leaves' values for that block are still in L1, so memory is read once
// although each leaf has its own expression. Otherwise (broadcasting) the value is one xtensor
// assignment and each adjoint is evaluated by xtensor and summed over the broadcast axes back
// to the leaf's shape.
#pragma once

#include <algorithm>
#include <array>
#include <cstddef>
#include <tuple>
#include <vector>

#include <tbb/blocked_range.h>
#include <tbb/parallel_for.h>
#include <xtensor/xarray.hpp>
#include <xtensor/xtensor.hpp>

#include "autodiff/expression.hpp"
#include "autodiff/grad_mode.hpp"

namespace xgrad {

namespace detail {

// Elements per block of the fused node: 1024 floats = 4 KiB per array, so that the arrays of a
// few leaves, their gradients and the output gradient stay in L1 across the per-leaf loops of the
// backward (at 4096 floats they spilled to L2: forward + backward of relu(a * b + c) at 1M floats
// took 1.25x the one-pass hand loop, at 1024 0.98x).
inline constexpr std::size_t fused_block = 1024;

// Adds `full`, a gradient of the output's shape, to the leaf's gradient, summed over the axes
// along which the leaf was broadcast. Defined, for float and double, in fused_node.cpp.
template <class T>
void accumulate_summed(Node<T>& leaf, xt::xarray<T>&& full, const Shape& out_shape);

// The whole-array path: broadcasting allowed, gradient summed back to the leaf's shape. The
// adjoint is evaluated into an array first, so that each expression instantiates one xtensor
// assignment and the reduction is compiled once per T.
template <class T, class E>
void accumulate_broadcast(Node<T>& leaf, const E& expr, const Shape& out_shape) {
    // Into the buffer zero_grad kept, when the leaf holds no live gradient: no fresh pages.
    xt::xarray<T> full;
    if (!leaf.has_grad) full = std::move(leaf.grad);
    xt::noalias(full) = expr;
    accumulate_summed(leaf, std::move(full), out_shape);
}

// Writes (or adds) expr[i] for i in [begin, end) into grad, with xsimd batches. Valid only when
// every operand of expr is a contiguous array of grad's shape or a scalar. grad is a buffer of its
// own (a fresh value, or a leaf's gradient, never an operand): said with __restrict, so that the
// loop keeps the operands' data pointers in registers rather than reloading them through the
// expression after every store. (materialize's backward copies a seed that is a leaf's gradient.)
template <class T, class E>
void store_block(T* __restrict grad, const E& expr, std::size_t begin, std::size_t end, bool add) {
    using batch = xt_simd::simd_type<T>;
    constexpr std::size_t width = batch::size;
    std::size_t i = begin;
    const std::size_t simd_end = begin + (end - begin) / width * width;
    if (add) {
        for (; i < simd_end; i += width) {
            (batch::load_unaligned(grad + i) + expr.template load_simd<xt_simd::unaligned_mode, T>(i)).store_unaligned(grad + i);
        }
        for (; i < end; ++i) grad[i] += expr.data_element(i);
    } else {
        for (; i < simd_end; i += width) {
            expr.template load_simd<xt_simd::unaligned_mode, T>(i).store_unaligned(grad + i);
        }
        for (; i < end; ++i) grad[i] = expr.data_element(i);
    }
}

// Up to this many elements the blocks run in the calling thread. A parallel loop leaves the worker
// it woke spinning, and the calling thread's next work runs slower beside it: with paper-mlp's
// sigmoid nodes (6,000 elements) in parallel, above the 4 blocks this was before, its step at 2
// threads took longer than at 1 (see parallel_pass_elements, layers/parameter_pieces.hpp). 16
// blocks (the same gain there as 64) keeps mid-sized nodes of costly ops, such as a sigmoid of
// 2^16 elements (about 60 µs), in parallel.
inline constexpr std::size_t fused_parallel_above = 16 * fused_block;

// Calls f(begin, end) for every block of [0, size), in parallel above fused_parallel_above.
template <class F>
void for_each_block(std::size_t size, const F& f) {
    const std::size_t blocks = (size + fused_block - 1) / fused_block;
    if (size <= fused_parallel_above) {
        for (std::size_t b = 0; b < blocks; ++b) f(b * fused_block, std::min(size, (b + 1) * fused_block));
        return;
    }
    tbb::parallel_for(tbb::blocked_range<std::size_t>(0, blocks), [&](const tbb::blocked_range<std::size_t>& r) {
        for (std::size_t b = r.begin(); b != r.end(); ++b) f(b * fused_block, std::min(size, (b + 1) * fused_block));
    });
}

// The forward value; blockwise when store_block's condition holds (all leaves of that shape).
template <class T, class E>
xt::xarray<T> evaluate(const E& expression) {
    decltype(auto) value = expression.value();  // a leaf's array by reference, not copied
    const Shape shape = to_shape(value.shape());
    if (!expression.all_leaves_have_shape(shape)) return value;
    xt::xarray<T> out = xt::xarray<T>::from_shape(shape);
    for_each_block(out.size(), [&](std::size_t begin, std::size_t end) {
        store_block(out.data(), value, begin, end, false);
    });
    return out;
}

template <class T, class Adjoints>
void backprop_fused(const Adjoints& adjoints, bool all_same_shape, const Shape& out_shape) {
    if (!all_same_shape) {
        std::apply([&](const auto&... adj) {
            ((adj.leaf.requires_grad() ? accumulate_broadcast(*adj.leaf.node(), adj.expr, out_shape) : void()), ...);
        }, adjoints);
        return;
    }
    constexpr std::size_t count = std::tuple_size_v<Adjoints>;
    // Decide per entry, in order, whether it writes or adds: a leaf used twice gets its first
    // contribution written and its second added.
    std::array<T*, count> targets{};
    std::array<bool, count> add{};
    const std::size_t size = element_count(out_shape);
    std::size_t k = 0;
    std::apply([&](const auto&... adj) {
        ((void)[&] {
            Node<T>& leaf = *adj.leaf.node();
            if (leaf.requires_grad) {
                add[k] = prepare_grad_buffer(leaf);
                targets[k] = leaf.grad.data();
            }
            ++k;
        }(), ...);
    }, adjoints);
    for_each_block(size, [&](std::size_t begin, std::size_t end) {
        std::size_t j = 0;
        std::apply([&](const auto&... adj) {
            ((targets[j] ? store_block(targets[j], adj.expr, begin, end, add[j]) : void(), ++j), ...);
        }, adjoints);
    });
}

// The tree's adjoints given the output gradient g, from its stored output where its root allows.
template <class E, class G, class T>
auto root_adjoints(const E& expression, const G& g, const xt::xarray<T>& output) {
    if constexpr (requires { expression.adjoints_from_output(g, output); }) {
        return expression.adjoints_from_output(g, output);
    } else {
        return expression.adjoints(g);
    }
}

}  // namespace detail

template <Expression E>
Var<typename E::value_type> materialize(const E& expression) {
    using T = typename E::value_type;
    xt::xarray<T> value = detail::evaluate<T>(expression);
    if (!grad_enabled() || !expression.requires_grad()) return Var<T>(std::move(value));
    std::vector<std::shared_ptr<Node<T>>> inputs;
    expression.collect_inputs(inputs);
    std::sort(inputs.begin(), inputs.end());
    inputs.erase(std::unique(inputs.begin(), inputs.end()), inputs.end());
    return Var<T>::from_op(std::move(value), "elementwise", inputs, [expression, inputs](const Node<T>& self, const xt::xarray<T>& grad_out) {
        const Shape out_shape = to_shape(self.value.shape());
        const bool same_shape = expression.all_leaves_have_shape(out_shape);
        // A seed that is a leaf's own gradient (y.backward(x.grad())) would be read while that
        // gradient is written: the adjoints read a copy of it instead.
        const bool seed_is_a_gradient = std::any_of(inputs.begin(), inputs.end(), [&](const auto& leaf) {
            return leaf->grad.size() != 0 && leaf->grad.data() == grad_out.data();
        });
        if (seed_is_a_gradient) {
            const xt::xarray<T> seed = grad_out;
            detail::backprop_fused<T>(detail::root_adjoints(expression, seed, self.value), same_shape, out_shape);
            return;
        }
        detail::backprop_fused<T>(detail::root_adjoints(expression, grad_out, self.value), same_shape, out_shape);
    });
}

template <class T>
template <class E>
    requires requires { typename E::is_expression; } && std::same_as<typename E::value_type, T>
Var<T>::Var(const E& expression) : Var(materialize(expression)) {}

}  // namespace xgrad
