// Linear: y = x W^T + b for x of shape (N, in_features), as torch.nn.Linear (weight (out, in)).
#pragma once

#include <cstddef>
#include <string>

#include "autodiff/var.hpp"
#include "layers/init.hpp"
#include "layers/module.hpp"

namespace xgrad {

template <class T>
class Linear : public Module<T> {
public:
    // Parameters get torch's default init from `rng`.
    Linear(std::size_t in_features, std::size_t out_features, bool bias = true, Rng& rng = default_rng());

    // A ShapeError naming this layer unless x is (N, in_features).
    Var<T> forward(const Var<T>& x) override;
    std::string describe() const override;
    void reset_parameters(Rng& rng = default_rng());

    std::size_t in_features() const { return in_features_; }
    std::size_t out_features() const { return out_features_; }
    Var<T>& weight() { return *weight_; }
    // Null when constructed without bias.
    Var<T>* bias() { return bias_; }

private:
    std::size_t in_features_;
    std::size_t out_features_;
    Var<T>* weight_;
    Var<T>* bias_ = nullptr;
};

extern template class Linear<float>;
extern template class Linear<double>;

}  // namespace xgrad
