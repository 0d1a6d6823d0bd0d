#include "layers/normalization/weight_standardization.hpp"

#include <utility>

#include "layers/normalization/normalization_node.hpp"

namespace xgrad {

template <class T>
Var<T> standardize_weight(const Var<T>& weight, double eps, const std::string& where) {
    const Shape shape = weight.shape();
    const std::size_t filters = shape.empty() ? 0 : shape[0];
    if (shape.size() < 2 || (filters > 0 && weight.size() == 0)) {
        throw ShapeError(where + ": expected a weight (O, ...) with at least one value per filter, got " +
                         shape_str(shape));
    }
    // (O, 1, K): one sample per filter, its K values one group of a single channel.
    const ChannelShape filter_rows{filters, 1, filters == 0 ? 0 : weight.size() / filters};
    const Grouping grouping = Grouping::per_sample(filter_rows, 1);
    NormalizeOptions<T> options;
    options.eps = eps;
    xt::xarray<T> standardized = xt::xarray<T>::from_shape(shape);
    NormalizedBatch batch = normalize_batch(grouping, weight.value().data(), options, NoEpilogue{}, standardized.data());
    return normalization_node("standardize_weight", weight, std::move(standardized), grouping, std::move(batch),
                              GradientThrough::batch(), NormalizationParameters<T>{}, NoEpilogue{});
}

template Var<float> standardize_weight(const Var<float>&, double, const std::string&);
template Var<double> standardize_weight(const Var<double>&, double, const std::string&);

}  // namespace xgrad
