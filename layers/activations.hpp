// Parameter-free modules: the activations ReLU, Sigmoid and Tanh (each one fused elementwise
// node), and Flatten, which reshapes (N, ...) to (N, -1) as torch.nn.Flatten().
#pragma once

#include <string>

#include "autodiff/var.hpp"
#include "layers/module.hpp"

namespace xgrad {

template <class T>
class ReLU : public Module<T> {
public:
    Var<T> forward(const Var<T>& x) override;
    std::string describe() const override { return "ReLU()"; }
};

template <class T>
class Sigmoid : public Module<T> {
public:
    Var<T> forward(const Var<T>& x) override;
    std::string describe() const override { return "Sigmoid()"; }
};

template <class T>
class Tanh : public Module<T> {
public:
    Var<T> forward(const Var<T>& x) override;
    std::string describe() const override { return "Tanh()"; }
};

template <class T>
class Flatten : public Module<T> {
public:
    // A ShapeError naming this layer if x has fewer than 2 dimensions.
    Var<T> forward(const Var<T>& x) override;
    std::string describe() const override { return "Flatten(start_dim=1, end_dim=-1)"; }
};

extern template class ReLU<float>;
extern template class ReLU<double>;
extern template class Sigmoid<float>;
extern template class Sigmoid<double>;
extern template class Tanh<float>;
extern template class Tanh<double>;
extern template class Flatten<float>;
extern template class Flatten<double>;

}  // namespace xgrad
