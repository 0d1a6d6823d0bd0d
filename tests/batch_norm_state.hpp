// Reaching into a BatchNorm layer's state from the tests: its buffers by name, gamma and beta.
#pragma once

#include <stdexcept>
#include <string>

#include "layers/normalization/batch_norm.hpp"

namespace xgrad_test {

template <class T>
xt::xarray<T>& buffer(xgrad::BatchNorm<T>& bn, const std::string& name) {
    for (auto& [n, b] : bn.named_buffers()) {
        if (n == name) return *b.tensor;
    }
    throw std::logic_error("no buffer " + name);
}

template <class T>
void setAffine(xgrad::BatchNorm<T>& bn, const xt::xarray<T>& gamma, const xt::xarray<T>& beta) {
    xgrad::Var<T>(*bn.weight()).mutable_value() = gamma;
    xgrad::Var<T>(*bn.bias()).mutable_value() = beta;
}

}  // namespace xgrad_test
