// A node of the dynamic graph: a value, its gradient once one exists, and how to pass the gradient on.
#pragma once

#include <functional>
#include <memory>
#include <type_traits>
#include <vector>

#include <xtensor/xarray.hpp>
#include <xtensor/xnoalias.hpp>

namespace xgrad {

template <class T>
struct Node {
    xt::xarray<T> value;
    // Meaningful only while has_grad: allocated by the first accumulation, not before.
    xt::xarray<T> grad;
    bool has_grad = false;
    bool requires_grad = false;
    // The op that made this node ("leaf" for user-created ones); shown in errors and graph dumps.
    const char* op = "leaf";
    // Graph edges, kept so inputs outlive this node until backward has run.
    std::vector<std::shared_ptr<Node>> inputs;
    // Adds `grad_out`, the gradient reaching this node, into its inputs' gradients. Empty for
    // leaves. The gradient is passed rather than read from `grad` so that a root's seed is used
    // where it lies, without a copy.
    using Backward = std::function<void(const Node&, const xt::xarray<T>& grad_out)>;
    Backward backward;
    // Set on op results that recorded a backward; stays set after the graph is freed.
    bool interior = false;
    bool freed = false;

    bool is_leaf() const { return !interior; }
};

// Makes node.grad an array of the node's shape that the caller will overwrite, and returns
// whether it held a live gradient to add to instead. The buffer of an earlier gradient is
// reused: a fresh large array costs a page fault per 4 KiB on first touch.
template <class T>
bool prepare_grad_buffer(Node<T>& node) {
    if (node.has_grad) return true;
    node.grad.resize(node.value.shape());
    node.has_grad = true;
    return false;
}

// Adds `contribution` (an xtensor expression of the node's shape that does not read node.grad)
// to the node's gradient, allocating the gradient on first use so an untouched gradient costs
// nothing. noalias: xtensor would otherwise evaluate into a temporary and swap it in.
template <class T, class E>
void accumulate_grad(Node<T>& node, E&& contribution) {
    // An rvalue array is taken as it is: a move is cheaper than copying into an old buffer.
    if constexpr (std::is_same_v<E, xt::xarray<T>>) {
        if (!node.has_grad) {
            node.grad = std::move(contribution);
            node.has_grad = true;
            return;
        }
    }
    if (prepare_grad_buffer(node)) {
        xt::noalias(node.grad) += std::forward<E>(contribution);
    } else {
        xt::noalias(node.grad) = std::forward<E>(contribution);
    }
}

}  // namespace xgrad
