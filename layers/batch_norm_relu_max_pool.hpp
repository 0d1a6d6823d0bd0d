// BatchNorm2d, ReLU and MaxPool2d(2) in one node: the pooled output of BatchNormReLU2d over 2×2
// windows at stride 2, the normalized tensor and its gradient never written (the passes of
// normalized_max_pool.hpp, after BatchNorm's statistics and coefficients). The module
// BatchNormReLUMaxPool2d stands in for BatchNorm2d, ReLU and MaxPool2d(2) with BatchNorm2d's
// state, so that its state_dict loads into either.
#pragma once

#include <cstddef>
#include <string_view>

#include "autodiff/var.hpp"
#include "layers/normalization/batch_norm.hpp"

namespace xgrad {

// max_pool2d(relu(batch_norm(x, args)), 2) of torch.nn.functional over x of shape (N, C, H, W),
// torch's semantics for each (the first of equal maxima; an odd last row or column not pooled).
// The ShapeErrors of batch_norm and MaxPool2d, starting with `where`.
template <class T>
Var<T> batch_norm_relu_max_pool2d(const Var<T>& x, const BatchNormArgs<T>& args,
                                  std::string_view where = "batch_norm_relu_max_pool2d");

template <class T>
class BatchNormReLUMaxPool2d final : public BatchNorm<T> {
public:
    explicit BatchNormReLUMaxPool2d(std::size_t num_features, BatchNormOptions options = {})
        : BatchNorm<T>("BatchNormReLUMaxPool2d", {4}, "(N, C, H, W)", num_features, options, true) {}

protected:
    Var<T> normalize(const Var<T>& x, const BatchNormArgs<T>& args) const override {
        return batch_norm_relu_max_pool2d(x, args, this->where());
    }
};

extern template class BatchNormReLUMaxPool2d<float>;
extern template class BatchNormReLUMaxPool2d<double>;

}  // namespace xgrad
