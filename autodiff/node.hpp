// A node of the dynamic graph: a value, its gradient once one exists, and how to pass the gradient on.
#pragma once

#include <functional>
#include <memory>
#include <vector>

#include <xtensor/xarray.hpp>

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
    // Adds this node's gradient into its inputs' gradients. Empty for leaves.
    std::function<void(Node&)> backward;
    // Set on op results that recorded a backward; stays set after the graph is freed.
    bool interior = false;
    bool freed = false;

    bool is_leaf() const { return !interior; }
};

// Adds `contribution` (an xtensor expression of the node's shape) to the node's gradient,
// allocating the gradient on first use so an untouched gradient costs nothing.
template <class T, class E>
void accumulate_grad(Node<T>& node, E&& contribution) {
    if (node.has_grad) {
        node.grad += std::forward<E>(contribution);
    } else {
        node.grad = std::forward<E>(contribution);
        node.has_grad = true;
    }
}

}  // namespace xgrad
