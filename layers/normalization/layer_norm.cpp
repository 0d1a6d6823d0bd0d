#include "layers/normalization/layer_norm.hpp"

#include <algorithm>
#include <memory>
#include <stdexcept>
#include <type_traits>
#include <utility>
#include <vector>

#include "autodiff/grad_write.hpp"
#include "layers/normalization/elementwise_affine.hpp"
#include "layers/normalization/layer_norm_kernel.hpp"
#include "layers/normalization/normalize.hpp"
#include "layers/python_repr.hpp"

namespace xgrad {

namespace {

// Python's repr of a tuple of sizes: "(7,)", "(4, 5, 6)".
std::string python_tuple(const Shape& shape) {
    const std::string s = shape_str(shape);
    return shape.size() == 1 ? s.substr(0, s.size() - 1) + ",)" : s;
}

// The graph node: without elementwise_affine, dx by the stages; with it, dx and the gradients of
// weight and bias by layer_norm_backward.
template <class T, class Epilogue>
Var<T> layer_norm_node(const Var<T>& x, xt::xarray<T> y, const Grouping& grouping, NormalizedBatch batch,
                       const std::optional<Var<T>>& weight, const std::optional<Var<T>>& bias, Epilogue epilogue) {
    using NodePtr = typename Var<T>::NodePtr;
    const NodePtr xn = x.node();
    const NodePtr wn = weight ? weight->node() : nullptr;
    const NodePtr bn = bias ? bias->node() : nullptr;
    std::vector<NodePtr> inputs{xn};
    if (wn) inputs.push_back(wn);
    if (bn) inputs.push_back(bn);
    return Var<T>::from_op(
        std::move(y), "layer_norm", std::move(inputs),
        [xn, wn, bn, grouping, batch = std::move(batch), epilogue = std::move(epilogue)](const Node<T>&,
                                                                                        const xt::xarray<T>& dy) {
            GradWrite<T> dx(xn), dweight(wn), dbias(bn);
            if constexpr (std::is_same_v<Epilogue, NoEpilogue>) {
                if (dx.data()) {
                    normalize_backward<T>(grouping, batch, GradientThrough::batch(), dy.data(), xn->value.data(),
                                          nullptr, nullptr, epilogue, NormalizeGrads<T>{dx.data(), nullptr, nullptr});
                }
            } else {
                layer_norm_backward(grouping.groups(), grouping.group_size(), batch, dy.data(), xn->value.data(),
                                    epilogue, NormalizeGrads<T>{dx.data(), dweight.data(), dbias.data()});
            }
            dx.commit();
            dweight.commit();
            dbias.commit();
        });
}

}  // namespace

template <class T>
LayerNorm<T>::LayerNorm(Shape normalized_shape, LayerNormOptions options)
    : normalized_shape_(std::move(normalized_shape)), options_(options) {
    if (normalized_shape_.empty()) {
        throw std::invalid_argument(describe() + ": expected normalized_shape to be at least 1-dimensional, got ()");
    }
    if (options.elementwise_affine) this->register_affine(normalized_shape_);
}

template <class T>
Var<T> LayerNorm<T>::forward(const Var<T>& x) {
    const Shape shape = x.shape();
    const std::size_t dims = normalized_shape_.size();
    if (shape.size() < dims || !std::equal(normalized_shape_.begin(), normalized_shape_.end(), shape.end() - dims)) {
        const std::string expected = shape_str(normalized_shape_);
        throw ShapeError(this->where() + ": expected input (*, " + expected.substr(1) + ", got " + shape_str(shape));
    }
    this->check_state();

    std::size_t rows = 1;
    for (std::size_t d = 0; d < shape.size() - dims; ++d) rows *= shape[d];
    const std::size_t columns = element_count(normalized_shape_);
    const Grouping grouping = Grouping::per_row(rows, columns);
    NormalizeOptions<T> normalize;
    normalize.eps = options_.eps;
    const auto& weight = this->weight();
    const auto& bias = this->bias();
    xt::xarray<T> y = xt::xarray<T>::from_shape(shape);
    if (!weight) {
        NormalizedBatch batch = normalize_batch(grouping, x.value().data(), normalize, NoEpilogue{}, y.data());
        return layer_norm_node(x, std::move(y), grouping, std::move(batch), weight, bias, NoEpilogue{});
    }
    ElementwiseAffineEpilogue<T> affine(weight->value().data(), bias->value().data(), columns);
    NormalizedBatch batch = layer_norm_forward(rows, columns, x.value().data(), affine, options_.eps, y.data());
    return layer_norm_node(x, std::move(y), grouping, std::move(batch), weight, bias, std::move(affine));
}

template <class T>
std::string LayerNorm<T>::describe() const {
    return "LayerNorm(" + python_tuple(normalized_shape_) + ", eps=" + python_float(options_.eps) +
           ", elementwise_affine=" + python_bool(options_.elementwise_affine) + ")";
}

template class LayerNorm<float>;
template class LayerNorm<double>;

}  // namespace xgrad
