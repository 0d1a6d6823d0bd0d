// Residual: output = x + body(x), the skip connection of a residual block (He et al. 2016), with
// the body a Sequential whose output has its input's shape. The body is registered as the
// submodule "body", so the state_dict names of its layers nest under it: a block registered as
// "block1" whose body's first layer is a Conv2d has "block1.body.0.weight", as torch's
//   class Residual(nn.Module): def __init__(self, body): self.body = body
// would name it.
#pragma once

#include <memory>
#include <string>

#include "autodiff/var.hpp"
#include "layers/module.hpp"
#include "layers/sequential.hpp"

namespace xgrad {

template <class T>
class Residual : public Module<T> {
public:
    // A null body is a std::invalid_argument.
    explicit Residual(std::shared_ptr<Sequential<T>> body);

    // A ShapeError naming this module's where() and both shapes when body(x) has another shape than x.
    Var<T> forward(const Var<T>& x) override;
    std::string describe() const override { return "Residual"; }

    Sequential<T>& body() { return *body_; }

private:
    std::shared_ptr<Sequential<T>> body_;
};

extern template class Residual<float>;
extern template class Residual<double>;

}  // namespace xgrad
