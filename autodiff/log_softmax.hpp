// Numerically stable log-softmax along one axis: x - max - log(sum(exp(x - max))).
#pragma once

#include <cstddef>

#include "autodiff/elementwise_ops.hpp"
#include "autodiff/var.hpp"

namespace xgrad {

template <class T>
Var<T> log_softmax(const Var<T>& x, std::ptrdiff_t axis = -1);

template <Expression E>
auto log_softmax(const E& e, std::ptrdiff_t axis = -1) { return log_softmax(materialize(e), axis); }

}  // namespace xgrad
