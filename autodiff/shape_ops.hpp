// Ops that move elements without changing them: reshape, permute, transpose.
#pragma once

#include <cstddef>
#include <vector>

#include "autodiff/elementwise_ops.hpp"
#include "autodiff/var.hpp"

namespace xgrad {

// New shape with the same number of elements; one entry may be -1 (inferred).
template <class T>
Var<T> reshape(const Var<T>& x, const std::vector<std::ptrdiff_t>& shape);

// Axis i of the result is axis order[i] of x (torch.permute / numpy.transpose(x, order)).
template <class T>
Var<T> permute(const Var<T>& x, const std::vector<std::size_t>& order);

// Swaps the last two axes (a 2-D matrix transpose).
template <class T>
Var<T> transpose(const Var<T>& x);

template <Expression E>
auto reshape(const E& e, const std::vector<std::ptrdiff_t>& shape) { return reshape(materialize(e), shape); }
template <Expression E>
auto permute(const E& e, const std::vector<std::size_t>& order) { return permute(materialize(e), order); }
template <Expression E>
auto transpose(const E& e) { return transpose(materialize(e)); }

}  // namespace xgrad
