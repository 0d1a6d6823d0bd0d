// The reverse sweep: explicit topological order, gradient accumulation, graph freeing.
#pragma once

#include <memory>

#include <xtensor/xarray.hpp>

#include "autodiff/node.hpp"

namespace xgrad {

// Seeds `root` with `seed`, then runs every node's backward in reverse topological order so a
// node passes its gradient on only after all its consumers have contributed. Gradients of
// intermediate nodes are released as soon as they are passed on; unless retain_graph, the
// edges and backward functions are dropped too, freeing the graph.
template <class T>
void run_backward(const std::shared_ptr<Node<T>>& root, const xt::xarray<T>& seed, bool retain_graph);

}  // namespace xgrad
