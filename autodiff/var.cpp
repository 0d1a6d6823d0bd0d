#include "autodiff/var.hpp"

#include <stdexcept>
#include <unordered_set>

#include "autodiff/backward.hpp"

namespace xgrad {

template <class T>
Var<T>::Var(xt::xarray<T> value, bool requires_grad) : node_(std::make_shared<Node<T>>()) {
    node_->value = std::move(value);
    node_->requires_grad = requires_grad;
}

template <class T>
Var<T>::Var(NodePtr node) : node_(std::move(node)) {
    if (!node_) throw std::invalid_argument("Var: null node");
}

template <class T>
Var<T> Var<T>::from_op(xt::xarray<T> value, const char* op, std::vector<NodePtr> inputs,
                       typename Node<T>::Backward backward) {
    auto node = std::make_shared<Node<T>>();
    node->value = std::move(value);
    node->op = op;
    bool needs_graph = false;
    if (grad_enabled()) {
        for (const auto& in : inputs) needs_graph = needs_graph || in->requires_grad;
    }
    if (needs_graph) {
        node->requires_grad = true;
        node->inputs = std::move(inputs);
        node->backward = std::move(backward);
        node->interior = true;
    }
    return Var(std::move(node));
}

template <class T>
const xt::xarray<T>& Var<T>::grad() const {
    if (!node_->has_grad) {
        throw std::logic_error(std::string("Var::grad: no gradient has reached this Var (op '") +
                               node_->op + "', shape " + shape_str(shape()) +
                               "); call backward() first, and check requires_grad");
    }
    return node_->grad;
}

template <class T>
void Var<T>::zero_grad() {
    node_->has_grad = false;  // the buffer stays, for the next backward to write into
}

template <class T>
void Var<T>::backward(bool retain_graph) const {
    if (size() != 1) {
        throw ShapeError("backward: called without a seed gradient on a non-scalar of shape " +
                         shape_str(shape()) + " (op '" + node_->op +
                         "'); pass the gradient of the final quantity with respect to it");
    }
    run_backward(node_, xt::xarray<T>(xt::ones<T>(node_->value.shape())), retain_graph);
}

template <class T>
void Var<T>::backward(const xt::xarray<T>& seed, bool retain_graph, const LeafFinished<T>& leaf_finished) const {
    if (to_shape(seed.shape()) != shape()) {
        throw ShapeError("backward: seed gradient of shape " + shape_str(seed.shape()) +
                         " given for a Var of shape " + shape_str(shape()) + " (op '" + node_->op + "')");
    }
    run_backward(node_, seed, retain_graph, leaf_finished);
}

template <class T>
std::size_t graph_size(const Var<T>& v) {
    std::unordered_set<const Node<T>*> seen;
    std::vector<const Node<T>*> stack{v.node().get()};
    while (!stack.empty()) {
        const Node<T>* n = stack.back();
        stack.pop_back();
        if (!seen.insert(n).second) continue;
        for (const auto& in : n->inputs) stack.push_back(in.get());
    }
    return seen.size();
}

template class Var<float>;
template class Var<double>;
template std::size_t graph_size(const Var<float>&);
template std::size_t graph_size(const Var<double>&);

}  // namespace xgrad
