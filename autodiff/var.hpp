// Var<T>: the user's handle to a graph node. Copies share the node, as torch.Tensor handles do.
#pragma once

#include <concepts>
#include <memory>
#include <string>
#include <vector>

#include <xtensor/xarray.hpp>

#include "autodiff/backward.hpp"
#include "autodiff/grad_mode.hpp"
#include "autodiff/node.hpp"
#include "autodiff/shape.hpp"

namespace xgrad {

template <class T>
class Var {
public:
    using value_type = T;
    using NodePtr = std::shared_ptr<Node<T>>;

    // A leaf holding `value`; gradients are accumulated into it only if requires_grad.
    explicit Var(xt::xarray<T> value, bool requires_grad = false);
    explicit Var(NodePtr node);
    // Materializes an elementwise expression tree as one fused node (defined in fused_node.hpp).
    template <class E>
        requires requires { typename E::is_expression; } && std::same_as<typename E::value_type, T>
    Var(const E& expression);  // NOLINT: implicit on purpose, `Var y = relu(a * b + c);`

    // The result of an op: records `backward` and the inputs only when grad mode is on and some
    // input requires a gradient; otherwise the result is a constant.
    static Var from_op(xt::xarray<T> value, const char* op, std::vector<NodePtr> inputs,
                       typename Node<T>::Backward backward);

    const xt::xarray<T>& value() const { return node_->value; }
    // In-place access for optimizers and initializers; does not record anything. An op's result
    // must not be changed before its backward has run: some backwards read it (log_softmax, and a
    // fused node rooted at sigmoid, tanh, exp or sqrt).
    xt::xarray<T>& mutable_value() { return node_->value; }
    Shape shape() const { return to_shape(node_->value.shape()); }
    std::size_t size() const { return node_->value.size(); }
    std::size_t dim() const { return node_->value.dimension(); }

    bool requires_grad() const { return node_->requires_grad; }
    void set_requires_grad(bool on) { node_->requires_grad = on; }
    bool has_grad() const { return node_->has_grad; }
    // Throws std::logic_error if no gradient has reached this Var since the last zero_grad.
    const xt::xarray<T>& grad() const;
    // Forgets the gradient: the next backward writes instead of adding. The buffer is kept and
    // reused (torch's zero_grad(set_to_none=False) without the memset).
    void zero_grad();

    // Reverse-mode sweep from this Var. A non-scalar needs `seed`, the gradient of the final
    // quantity with respect to this Var. The graph is freed unless retain_graph. leaf_finished is
    // told of each leaf as soon as its gradient is final (autodiff/backward.hpp).
    void backward(bool retain_graph = false) const;
    void backward(const xt::xarray<T>& seed, bool retain_graph = false, const LeafFinished<T>& leaf_finished = {}) const;

    const NodePtr& node() const { return node_; }
    const char* op() const { return node_->op; }

private:
    NodePtr node_;
};

// How many distinct nodes are reachable from `v` (itself included), following graph edges.
template <class T>
std::size_t graph_size(const Var<T>& v);

}  // namespace xgrad
