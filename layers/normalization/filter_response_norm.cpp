#include "layers/normalization/filter_response_norm.hpp"

#include <stdexcept>
#include <utility>

#include "layers/normalization/normalization_node.hpp"
#include "layers/python_repr.hpp"

namespace xgrad {

template <class T>
FilterResponseNorm2d<T>::FilterResponseNorm2d(std::size_t num_features, double eps)
    : num_features_(num_features), eps_(eps) {
    if (num_features == 0 || !(eps > 0.0)) {
        throw std::invalid_argument("FilterResponseNorm2d: expected num_features >= 1 and eps > 0, got " +
                                    std::to_string(num_features) + " and eps=" + python_float(eps));
    }
    this->register_affine({num_features});
    tau_ = &this->register_like_affine("tau", T(0));
}

template <class T>
Var<T> FilterResponseNorm2d<T>::forward(const Var<T>& x) {
    const Shape shape = x.shape();
    if (shape.size() != 4) throw ShapeError(this->where() + ": expected input (N, C, H, W), got " + shape_str(shape));
    if (shape[1] != num_features_) {
        throw ShapeError(this->where() + ": expected C=" + std::to_string(num_features_) + " channels, got input " +
                         shape_str(shape));
    }
    if (shape[0] > 0 && shape[2] * shape[3] == 0) {
        throw ShapeError(this->where() + ": expected H·W >= 1 values per instance to normalize, got input " +
                         shape_str(shape));
    }
    this->check_state();
    const ChannelShape sh = channel_shape(shape);
    // One group per (sample, channel): nu² over the instance's H·W values.
    const Grouping grouping = Grouping::per_sample(sh, sh.c);
    NormalizeOptions<T> options;
    options.eps = eps_;
    const Var<T>& weight = *this->weight();
    const Var<T>& bias = *this->bias();
    options.gamma = weight.value().data();
    options.beta = bias.value().data();
    options.centring = Centring::none;
    TluEpilogue<T> tlu(grouping.row_view(), sh.c, tau_->value().data());
    xt::xarray<T> y = xt::xarray<T>::from_shape(shape);
    NormalizedBatch batch = normalize_batch(grouping, x.value().data(), options, tlu, y.data());
    return normalization_node("filter_response_norm", x, std::move(y), grouping, std::move(batch),
                              GradientThrough::mean_square(), NormalizationParameters<T>{weight, bias, *tau_},
                              std::move(tlu));
}

template <class T>
std::string FilterResponseNorm2d<T>::describe() const {
    return "FilterResponseNorm2d(" + std::to_string(num_features_) + ", eps=" + python_float(eps_) + ")";
}

template class FilterResponseNorm2d<float>;
template class FilterResponseNorm2d<double>;

}  // namespace xgrad
