#include "layers/activations.hpp"

#include "autodiff/elementwise_ops.hpp"
#include "autodiff/shape_ops.hpp"

namespace xgrad {

template <class T>
Var<T> ReLU<T>::forward(const Var<T>& x) {
    return relu(x);
}

template <class T>
Var<T> Sigmoid<T>::forward(const Var<T>& x) {
    return sigmoid(x);
}

template <class T>
Var<T> Tanh<T>::forward(const Var<T>& x) {
    return tanh(x);
}

template <class T>
Var<T> Flatten<T>::forward(const Var<T>& x) {
    const Shape shape = x.shape();
    if (shape.size() < 2) {
        throw ShapeError(this->where() + ": expected input (N, ...) with at least 2 dimensions, got " + shape_str(shape));
    }
    // The width is computed rather than inferred (-1) so that an empty batch keeps it.
    const Shape rest(shape.begin() + 1, shape.end());
    return reshape(x, {static_cast<std::ptrdiff_t>(shape[0]), static_cast<std::ptrdiff_t>(element_count(rest))});
}

template class ReLU<float>;
template class ReLU<double>;
template class Sigmoid<float>;
template class Sigmoid<double>;
template class Tanh<float>;
template class Tanh<double>;
template class Flatten<float>;
template class Flatten<double>;

}  // namespace xgrad
