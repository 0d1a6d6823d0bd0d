#include "layers/sequential.hpp"

namespace xgrad {

template <class T>
Sequential<T>::Sequential(std::initializer_list<std::shared_ptr<Module<T>>> modules) {
    for (const auto& m : modules) add(m);
}

template <class T>
Var<T> Sequential<T>::forward(const Var<T>& x) {
    Var<T> y = x;
    for (const auto& m : modules_) y = (*m)(y);  // through operator(): the child's hooks run
    return y;
}

template class Sequential<float>;
template class Sequential<double>;

}  // namespace xgrad
