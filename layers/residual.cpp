#include "layers/residual.hpp"

#include <stdexcept>
#include <utility>

#include "autodiff/elementwise_ops.hpp"
#include "autodiff/shape.hpp"

namespace xgrad {

template <class T>
Residual<T>::Residual(std::shared_ptr<Sequential<T>> body) : body_(std::move(body)) {
    if (!body_) throw std::invalid_argument("Residual: null body");
    this->register_module("body", body_);
}

template <class T>
Var<T> Residual<T>::forward(const Var<T>& x) {
    const Var<T> y = (*body_)(x);  // through the hooks of the body
    // Broadcasting would hide a body that changes the shape, so the shapes must be equal.
    if (y.shape() != x.shape()) {
        throw ShapeError(this->where() + ": the body's output " + shape_str(y.shape()) + " has not the shape of its input " +
                         shape_str(x.shape()) + ", which the skip connection adds to it");
    }
    return x + y;
}

template class Residual<float>;
template class Residual<double>;

}  // namespace xgrad
