// Reductions as graph nodes: sum and mean (over everything or over axes), max over one axis.
// Axes may be negative (counted from the end), as in numpy and torch.
#pragma once

#include <cstddef>
#include <vector>

#include "autodiff/elementwise_ops.hpp"
#include "autodiff/var.hpp"

namespace xgrad {

using Axes = std::vector<std::ptrdiff_t>;

// Over all elements: a 0-d result (shape ()).
template <class T>
Var<T> sum(const Var<T>& x);
template <class T>
Var<T> mean(const Var<T>& x);

// Over `axes`; keepdims leaves each reduced axis as size 1.
template <class T>
Var<T> sum(const Var<T>& x, const Axes& axes, bool keepdims = false);
template <class T>
Var<T> mean(const Var<T>& x, const Axes& axes, bool keepdims = false);

// Largest element along `axis`; the gradient goes to the arg-max (the first one on ties).
template <class T>
Var<T> max(const Var<T>& x, std::ptrdiff_t axis, bool keepdims = false);

template <Expression E>
auto sum(const E& e) { return sum(materialize(e)); }
template <Expression E>
auto mean(const E& e) { return mean(materialize(e)); }
template <Expression E>
auto sum(const E& e, const Axes& axes, bool keepdims = false) { return sum(materialize(e), axes, keepdims); }
template <Expression E>
auto mean(const E& e, const Axes& axes, bool keepdims = false) { return mean(materialize(e), axes, keepdims); }
template <Expression E>
auto max(const E& e, std::ptrdiff_t axis, bool keepdims = false) { return max(materialize(e), axis, keepdims); }

}  // namespace xgrad
