// Filter Response Normalization with its thresholded linear unit (Singh & Krishnan 2019), as
// timm's FilterResponseNormTlu2d: per sample and channel, with nu² the mean of x² over (H, W),
//   y = weight·x / sqrt(nu² + eps) + bias,  z = max(y, tau).
// No centring and no batch statistics: the same in training and eval, whatever the batch size.
// At a tie y == tau the gradient goes to y (epilogue.hpp's TluEpilogue).
#pragma once

#include <cstddef>
#include <string>

#include "autodiff/var.hpp"
#include "layers/normalization/normalization_layer.hpp"

namespace xgrad {

template <class T>
class FilterResponseNorm2d final : public NormalizationLayer<T> {
public:
    // Parameters weight (1), bias (0) and tau (0), each of shape (num_features,). A
    // std::invalid_argument unless num_features >= 1 and eps > 0 (which keeps an all-zero
    // instance finite).
    explicit FilterResponseNorm2d(std::size_t num_features, double eps = 1e-6);

    // A ShapeError naming this layer unless x is (N, num_features, H, W) with H·W >= 1, and the
    // parameters have their shapes.
    Var<T> forward(const Var<T>& x) override;
    // "FilterResponseNorm2d(4, eps=1e-06)".
    std::string describe() const override;

    std::size_t num_features() const { return num_features_; }
    double eps() const { return eps_; }
    const Var<T>& tau() const { return *tau_; }

private:
    std::size_t num_features_;
    double eps_;
    Var<T>* tau_;
};

extern template class FilterResponseNorm2d<float>;
extern template class FilterResponseNorm2d<double>;

}  // namespace xgrad
