#include "layers/normalization/group_norm.hpp"

#include <array>
#include <stdexcept>
#include <utility>
#include <vector>

#include "layers/normalization/group_norm_kernel.hpp"
#include "layers/normalization/normalization_node.hpp"
#include "layers/python_repr.hpp"

namespace xgrad {

namespace {

// The node's backward: group_norm_backward, whichever walk the forward took.
struct GroupNormBackward {
    std::size_t groups;
    template <class T>
    std::vector<std::array<double, 0>> operator()(const Grouping& grouping, const NormalizedBatch& batch,
                                                  GradientThrough, const T* dy, const T* x, const T* gamma,
                                                  const T* beta, const NoEpilogue&,
                                                  const NormalizeGrads<T>& grads) const {
        group_norm_backward(grouping.shape(), groups, batch, dy, x, gamma, beta, grads);
        return {};
    }
};

}  // namespace

template <class T>
GroupNorm<T>::GroupNorm(std::size_t num_groups, std::size_t num_channels, GroupNormOptions options)
    : num_groups_(num_groups), num_channels_(num_channels), options_(options) {
    if (num_groups == 0 || num_channels % num_groups != 0) {
        throw std::invalid_argument(describe() + ": num_channels must be divisible by num_groups, got " +
                                    std::to_string(num_channels) + " channels and " + std::to_string(num_groups) +
                                    " groups");
    }
    if (options.affine) this->register_affine({num_channels});
}

template <class T>
Var<T> GroupNorm<T>::forward(const Var<T>& x) {
    const Shape shape = x.shape();
    if (shape.size() < 2 || shape[1] != num_channels_) {
        throw ShapeError(this->where() + ": expected input (N, " + std::to_string(num_channels_) + ", *), got " +
                         shape_str(shape));
    }
    const ChannelShape sh = channel_shape(shape);
    if (sh.n * (num_channels_ / num_groups_) * sh.s == 1) {
        throw ShapeError(this->where() + ": Expected more than 1 value per channel when training, got input " +
                         shape_str(shape));
    }
    this->check_state();

    const auto& weight = this->weight();
    const auto& bias = this->bias();
    xt::xarray<T> y = xt::xarray<T>::from_shape(shape);
    NormalizedBatch batch = group_norm_forward(sh, num_groups_, x.value().data(), weight ? weight->value().data() : nullptr,
                                               bias ? bias->value().data() : nullptr, options_.eps, y.data());
    return normalization_node("group_norm", x, std::move(y), Grouping::per_sample(sh, num_groups_), std::move(batch),
                              GradientThrough::batch(), NormalizationParameters<T>{weight, bias, {}}, NoEpilogue{},
                              GroupNormBackward{num_groups_});
}

template <class T>
std::string GroupNorm<T>::describe() const {
    return "GroupNorm(" + std::to_string(num_groups_) + ", " + std::to_string(num_channels_) +
           ", eps=" + python_float(options_.eps) + ", affine=" + python_bool(options_.affine) + ")";
}

template class GroupNorm<float>;
template class GroupNorm<double>;

}  // namespace xgrad
