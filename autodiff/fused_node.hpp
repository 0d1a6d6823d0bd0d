// Materializing an expression tree: ONE graph node whose forward is one xtensor assignment and
// whose backward evaluates each leaf's fused adjoint expression.
//
// When every leaf has the output's shape (the common case), the adjoints are evaluated together
// in cache-sized blocks: for each block, every leaf's gradient is written while the leaves'
// values for that block are still in L1/L2, so memory is read once although each leaf has its
// own expression. Blocks are independent and run in parallel. Otherwise (broadcasting) each
// adjoint is evaluated by xtensor and summed over the broadcast axes back to the leaf's shape.
#pragma once

#include <algorithm>
#include <cstddef>
#include <tuple>
#include <vector>

#include <tbb/blocked_range.h>
#include <tbb/parallel_for.h>
#include <xtensor/xarray.hpp>
#include <xtensor/xreducer.hpp>
#include <xtensor/xtensor.hpp>

#include "autodiff/expression.hpp"
#include "autodiff/grad_mode.hpp"

namespace xgrad {

namespace detail {

// Elements per block of the fused backward: 4096 floats = 16 KiB per array, so a handful of
// leaves, their gradients and the output gradient stay in L2 across the per-leaf loops.
inline constexpr std::size_t fused_block = 4096;

// The axes along which a gradient of shape `from` must be summed to get shape `to`
// (numpy broadcasting in reverse).
inline std::vector<std::size_t> broadcast_axes(const Shape& from, const Shape& to) {
    std::vector<std::size_t> axes;
    const std::size_t lead = from.size() - to.size();
    for (std::size_t i = 0; i < from.size(); ++i) {
        if (i < lead || (to[i - lead] == 1 && from[i] != 1)) axes.push_back(i);
    }
    return axes;
}

// The whole-array path: broadcasting allowed, gradient summed back to the leaf's shape.
template <class T, class E>
void accumulate_broadcast(Node<T>& leaf, const E& expr, const Shape& out_shape) {
    const Shape leaf_shape = to_shape(leaf.value.shape());
    if (leaf_shape == out_shape) {
        accumulate_grad(leaf, expr);
        return;
    }
    xt::xarray<T> summed = xt::sum(expr, broadcast_axes(out_shape, leaf_shape));
    summed.reshape(leaf_shape);
    accumulate_grad(leaf, std::move(summed));
}

// Writes (or adds) expr[i] for i in [begin, end) into grad, with xsimd batches. Valid only when
// every operand of expr is a contiguous array of grad's shape or a scalar.
template <class T, class E>
void store_block(T* grad, const E& expr, std::size_t begin, std::size_t end, bool add) {
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
                add[k] = leaf.has_grad;
                if (!leaf.has_grad) {
                    leaf.grad = xt::xarray<T>::from_shape(leaf.value.shape());
                    leaf.has_grad = true;
                }
                targets[k] = leaf.grad.data();
            }
            ++k;
        }(), ...);
    }, adjoints);
    const std::size_t blocks = (size + fused_block - 1) / fused_block;
    tbb::parallel_for(tbb::blocked_range<std::size_t>(0, blocks), [&](const tbb::blocked_range<std::size_t>& r) {
        for (std::size_t b = r.begin(); b != r.end(); ++b) {
            const std::size_t begin = b * fused_block;
            const std::size_t end = std::min(size, begin + fused_block);
            std::size_t j = 0;
            std::apply([&](const auto&... adj) {
                ((targets[j] ? store_block(targets[j], adj.expr, begin, end, add[j]) : void(), ++j), ...);
            }, adjoints);
        }
    });
}

}  // namespace detail

template <Expression E>
Var<typename E::value_type> materialize(const E& expression) {
    using T = typename E::value_type;
    xt::xarray<T> value = expression.value();
    if (!grad_enabled() || !expression.requires_grad()) return Var<T>(std::move(value));
    std::vector<std::shared_ptr<Node<T>>> inputs;
    expression.collect_inputs(inputs);
    std::sort(inputs.begin(), inputs.end());
    inputs.erase(std::unique(inputs.begin(), inputs.end()), inputs.end());
    return Var<T>::from_op(std::move(value), "elementwise", std::move(inputs), [expression](Node<T>& self) {
        const Shape out_shape = to_shape(self.value.shape());
        const bool same_shape = expression.all_leaves_have_shape(out_shape);
        detail::backprop_fused<T>(expression.adjoints(std::as_const(self.grad)), same_shape, out_shape);
    });
}

template <class T>
template <class E>
    requires requires { typename E::is_expression; } && std::same_as<typename E::value_type, T>
Var<T>::Var(const E& expression) : Var(materialize(expression)) {}

}  // namespace xgrad
