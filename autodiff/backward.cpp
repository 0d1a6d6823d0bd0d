#include "autodiff/backward.hpp"

#include <stdexcept>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

namespace xgrad {

namespace {

// Iterative post-order DFS (no recursion: graphs of long training runs are deep).
// Returns nodes so that every node comes after all of its inputs. The order owns the nodes, so
// freeing edges during the sweep cannot destroy a node the sweep has yet to visit.
template <class T>
std::vector<std::shared_ptr<Node<T>>> topological_order(const std::shared_ptr<Node<T>>& root) {
    std::vector<std::shared_ptr<Node<T>>> order;
    std::unordered_set<Node<T>*> visited;
    std::vector<std::pair<std::shared_ptr<Node<T>>, std::size_t>> stack{{root, 0}};
    visited.insert(root.get());
    while (!stack.empty()) {
        auto& [node, next_input] = stack.back();
        if (next_input < node->inputs.size()) {
            std::shared_ptr<Node<T>> in = node->inputs[next_input++];
            if (in->requires_grad && visited.insert(in.get()).second) stack.push_back({std::move(in), 0});
        } else {
            order.push_back(std::move(node));
            stack.pop_back();
        }
    }
    return order;
}

// For each leaf of the order that requires a gradient, the number of edges into it from the
// interior nodes of the order: the backwards still to run before its gradient is final.
template <class T>
std::unordered_map<Node<T>*, std::size_t> consumers_of_leaves(const std::vector<std::shared_ptr<Node<T>>>& order) {
    std::unordered_map<Node<T>*, std::size_t> consumers;
    for (const auto& n : order) {
        if (n->is_leaf()) continue;
        for (const auto& in : n->inputs) {
            if (in->is_leaf() && in->requires_grad) ++consumers[in.get()];
        }
    }
    return consumers;
}

}  // namespace

template <class T>
void run_backward(const std::shared_ptr<Node<T>>& root, const xt::xarray<T>& seed, bool retain_graph,
                  const LeafFinished<T>& leaf_finished) {
    if (!root->requires_grad) {
        throw std::logic_error(std::string("backward: the Var (op '") + root->op +
                               "') does not require a gradient: no input of its graph has requires_grad");
    }
    const auto order = topological_order(root);
    for (const auto& n : order) {
        if (n->freed) {
            throw std::logic_error(std::string("backward: the graph through op '") + n->op +
                                   "' was already freed by an earlier backward; pass retain_graph=true to it");
        }
        if (!n->is_leaf()) n->has_grad = false;  // intermediates start fresh on every sweep
    }
    if (root->is_leaf()) {
        accumulate_grad(*root, seed);
        if (leaf_finished) leaf_finished(*root);
        return;
    }
    std::unordered_map<Node<T>*, std::size_t> consumers;
    if (leaf_finished) consumers = consumers_of_leaves(order);
    // The root's gradient is the seed itself: handed to its backward as is, never copied.
    for (auto it = order.rbegin(); it != order.rend(); ++it) {
        Node<T>& n = **it;
        if (n.is_leaf()) continue;
        const bool is_root = &n == root.get();
        const bool runs = is_root || n.has_grad;
        if (runs) {
            n.backward(n, is_root ? seed : n.grad);
            n.has_grad = false;
            n.grad = xt::xarray<T>();
        }
        if (leaf_finished) {  // a node without a gradient passes none on: it is done with its inputs too
            for (const auto& in : n.inputs) {
                if (in->is_leaf() && in->requires_grad && --consumers[in.get()] == 0) leaf_finished(*in);
            }
        }
        if (runs && !retain_graph) {
            n.backward = nullptr;
            n.inputs.clear();
            n.freed = true;
        }
    }
}

template void run_backward(const std::shared_ptr<Node<float>>&, const xt::xarray<float>&, bool, const LeafFinished<float>&);
template void run_backward(const std::shared_ptr<Node<double>>&, const xt::xarray<double>&, bool,
                           const LeafFinished<double>&);

}  // namespace xgrad
