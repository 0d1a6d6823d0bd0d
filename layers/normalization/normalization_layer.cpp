#include "layers/normalization/normalization_layer.hpp"

#include <algorithm>
#include <string>
#include <utility>

#include <xtensor/xbuilder.hpp>

#include "layers/normalization/running_statistics.hpp"

namespace xgrad {

namespace {

// Checked on every forward: the layer's name is built only for the error.
template <class T>
void check_shape(const Module<T>& layer, const char* name, const xt::xarray<T>& value, const Shape& expected) {
    if (!std::equal(value.shape().begin(), value.shape().end(), expected.begin(), expected.end())) {
        throw ShapeError(layer.where() + ": " + name + " has shape " + shape_str(value.shape()) + ", expected " +
                         shape_str(expected));
    }
}

}  // namespace

template <class T>
void NormalizationLayer<T>::register_affine(const Shape& shape) {
    affine_shape_ = shape;
    weight_ = this->register_parameter("weight", Var<T>(xt::xarray<T>(xt::ones<T>(shape))));
    bias_ = this->register_parameter("bias", Var<T>(xt::xarray<T>(xt::zeros<T>(shape))));
}

template <class T>
Var<T>& NormalizationLayer<T>::register_like_affine(const std::string& name, T initial) {
    auto values = xt::xarray<T>::from_shape(affine_shape_);
    values.fill(initial);
    Var<T>& v = this->register_parameter(name, Var<T>(std::move(values)));
    like_affine_.emplace_back(name, v);
    return v;
}

template <class T>
void NormalizationLayer<T>::register_running_statistics(std::size_t channels) {
    running_shape_ = {channels};
    running_mean_ = &this->register_buffer("running_mean", xt::zeros<T>(running_shape_));
    running_var_ = &this->register_buffer("running_var", xt::ones<T>(running_shape_));
    num_batches_tracked_ = &this->register_counter("num_batches_tracked", 0);
}

template <class T>
void NormalizationLayer<T>::check_state() const {
    if (weight_) check_shape(*this, "weight", weight_->value(), affine_shape_);
    if (bias_) check_shape(*this, "bias", bias_->value(), affine_shape_);
    for (const auto& [name, v] : like_affine_) check_shape(*this, name.c_str(), v.value(), affine_shape_);
    if (running_mean_) check_shape(*this, "running_mean", *running_mean_, running_shape_);
    if (running_var_) check_shape(*this, "running_var", *running_var_, running_shape_);
}

template <class T>
RunningStats<T> NormalizationLayer<T>::moving_running_statistics(double factor) {
    return {running_mean_->data(), running_var_->data(), factor};
}

template class NormalizationLayer<float>;
template class NormalizationLayer<double>;

}  // namespace xgrad
