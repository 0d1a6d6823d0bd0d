// Layer Normalization (Ba, Kiros & Hinton 2016) with torch.nn.LayerNorm's semantics: an input whose
// trailing dims equal normalized_shape is normalized per leading index, by the mean and biased
// variance over those trailing dims; then, elementwise, y = weight·x̂ + bias with weight and bias of
// shape normalized_shape. No running statistics: training and eval compute the same.
// Built on the normalization stages: Grouping::per_sample over an (N_lead, 1, M) view (M the
// normalized elements); with weight and bias, forward and backward by layer_norm_kernel.hpp, over
// blocks of columns.
#pragma once

#include <string>

#include "autodiff/var.hpp"
#include "layers/normalization/normalization_layer.hpp"

namespace xgrad {

struct LayerNormOptions {
    double eps = 1e-5;
    bool elementwise_affine = true;  // parameters weight (1) and bias (0) of shape normalized_shape
};

template <class T>
class LayerNorm final : public NormalizationLayer<T> {
public:
    // A std::invalid_argument for an empty normalized_shape (torch: "Expected normalized_shape to be
    // at least 1-dimensional").
    explicit LayerNorm(Shape normalized_shape, LayerNormOptions options = {});

    // x of shape (*, normalized_shape...): a ShapeError naming the layer and both shapes otherwise.
    Var<T> forward(const Var<T>& x) override;
    // torch's repr: "LayerNorm((4, 5, 6), eps=1e-05, elementwise_affine=True)"; "(7,)" for one dim.
    std::string describe() const override;

    const Shape& normalized_shape() const { return normalized_shape_; }
    const LayerNormOptions& options() const { return options_; }

private:
    Shape normalized_shape_;
    LayerNormOptions options_;
};

}  // namespace xgrad
