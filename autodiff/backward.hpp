// The reverse sweep: explicit topological order, gradient accumulation, graph freeing.
#pragma once

#include <functional>
#include <memory>

#include <xtensor/xarray.hpp>

#include "autodiff/node.hpp"

namespace xgrad {

// Called with a leaf of the graph once the sweep has run every node that takes it as an input:
// its gradient is final for this backward (a data-parallel trainer starts reducing it then).
template <class T>
using LeafFinished = std::function<void(Node<T>& leaf)>;

// Seeds `root` with `seed`, then runs every node's backward in reverse topological order so a
// node passes its gradient on only after all its consumers have contributed. Gradients of
// intermediate nodes are released as soon as they are passed on; unless retain_graph, the
// edges and backward functions are dropped too, freeing the graph. `leaf_finished`, if given, is
// called once for each leaf of the graph that requires a gradient, as soon as it is final.
template <class T>
void run_backward(const std::shared_ptr<Node<T>>& root, const xt::xarray<T>& seed, bool retain_graph,
                  const LeafFinished<T>& leaf_finished = {});

}  // namespace xgrad
