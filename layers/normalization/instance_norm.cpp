#include "layers/normalization/instance_norm.hpp"

#include <stdexcept>
#include <utility>

#include "layers/normalization/normalization_node.hpp"
#include "layers/python_repr.hpp"

namespace xgrad {

template <class T>
InstanceNorm<T>::InstanceNorm(const char* kind, std::size_t spatial_dims, const char* spatial,
                              std::size_t num_features, InstanceNormOptions options)
    : kind_(kind), spatial_dims_(spatial_dims), spatial_(spatial), num_features_(num_features), options_(options) {
    if (num_features == 0) throw std::invalid_argument(describe() + ": expected at least 1 feature, got 0");
    if (!options.momentum) {
        throw std::invalid_argument(describe() + ": momentum=None (a cumulative average) is not supported, as in "
                                                 "torch 1.13, whose instance_norm takes a float momentum");
    }
    if (options.affine) this->register_affine({num_features});
    if (options.track_running_stats) this->register_running_statistics(num_features);
}

template <class T>
Var<T> InstanceNorm<T>::forward(const Var<T>& x) {
    const Shape shape = x.shape();
    const bool batched = shape.size() == spatial_dims_ + 2;
    const std::size_t channel_axis = batched ? 1 : 0;
    if ((!batched && shape.size() != spatial_dims_ + 1) || shape[channel_axis] != num_features_) {
        const std::string c = std::to_string(num_features_);
        throw ShapeError(this->where() + ": expected input (N, " + c + ", " + spatial_ + ") or (" + c + ", " +
                         spatial_ + "), got " + shape_str(shape));
    }
    ChannelShape sh{batched ? shape[0] : 1, num_features_, 1};
    for (std::size_t d = channel_axis + 1; d < shape.size(); ++d) sh.s *= shape[d];
    // As torch: the instances' own statistics in training, and in eval without running ones.
    const bool tracked = this->running_mean() != nullptr;
    const bool instance_statistics = this->is_training() || !tracked;
    const bool moves_running = this->is_training() && tracked;
    if (instance_statistics && sh.s <= 1) {
        throw ShapeError(this->where() + ": Expected more than 1 spatial element when training, got input " +
                         shape_str(shape));
    }
    if (moves_running && sh.n == 0) {
        throw ShapeError(this->where() + ": expected at least 1 sample to move the running statistics, got " +
                         "input " + shape_str(shape));
    }
    this->check_state();

    const auto& weight = this->weight();
    const auto& bias = this->bias();
    NormalizeOptions<T> normalize;
    normalize.eps = options_.eps;
    normalize.gamma = weight ? weight->value().data() : nullptr;
    normalize.beta = bias ? bias->value().data() : nullptr;
    const NormalizationParameters<T> params{weight, bias, {}};
    xt::xarray<T> y = xt::xarray<T>::from_shape(shape);
    if (instance_statistics) {
        const Grouping grouping = Grouping::per_sample(sh, num_features_);
        if (moves_running) normalize.running = this->moving_running_statistics(*options_.momentum);
        NormalizedBatch batch = normalize_batch(grouping, x.value().data(), normalize, NoEpilogue{}, y.data());
        return normalization_node("instance_norm", x, std::move(y), grouping, std::move(batch),
                                  GradientThrough::batch(), params, NoEpilogue{});
    }
    // Eval with running statistics: BatchNorm's eval, one normalization per channel.
    const Grouping grouping = Grouping::per_channel(sh);
    NormalizedBatch batch{
        running_normalization(this->running_mean()->data(), this->running_var()->data(), sh.c, options_.eps), {}};
    normalize_with(grouping, batch.norm, x.value().data(), normalize, NoEpilogue{}, y.data());
    return normalization_node("instance_norm", x, std::move(y), grouping, std::move(batch),
                              GradientThrough::constants(), params, NoEpilogue{});
}

template <class T>
std::string InstanceNorm<T>::describe() const {
    return std::string(kind_) + "(" + std::to_string(num_features_) + ", eps=" + python_float(options_.eps) +
           ", momentum=" + (options_.momentum ? python_float(*options_.momentum) : "None") +
           ", affine=" + python_bool(options_.affine) +
           ", track_running_stats=" + python_bool(options_.track_running_stats) + ")";
}

template class InstanceNorm<float>;
template class InstanceNorm<double>;

}  // namespace xgrad
