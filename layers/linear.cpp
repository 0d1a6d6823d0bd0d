#include "layers/linear.hpp"

#include <algorithm>
#include <stdexcept>

#include "autodiff/blas.hpp"
#include "layers/grad_kernels.hpp"

namespace xgrad {

template <class T>
Linear<T>::Linear(std::size_t in_features, std::size_t out_features, bool bias, Rng& rng)
    : in_features_(in_features), out_features_(out_features) {
    if (in_features == 0 || out_features == 0) {
        throw std::invalid_argument("Linear: in_features and out_features must be positive, got " +
                                    std::to_string(in_features) + " and " + std::to_string(out_features));
    }
    weight_ = &this->register_parameter("weight", Var<T>(xt::xarray<T>::from_shape({out_features, in_features})));
    if (bias) bias_ = &this->register_parameter("bias", Var<T>(xt::xarray<T>::from_shape({out_features})));
    reset_parameters(rng);
}

template <class T>
void Linear<T>::reset_parameters(Rng& rng) {
    default_init_(weight_->mutable_value(), bias_ ? &bias_->mutable_value() : nullptr, rng);
}

template <class T>
std::string Linear<T>::describe() const {
    return "Linear(in_features=" + std::to_string(in_features_) + ", out_features=" + std::to_string(out_features_) +
           (bias_ ? "" : ", bias=False") + ")";
}

template <class T>
Var<T> Linear<T>::forward(const Var<T>& x) {
    if (x.dim() != 2 || x.shape()[1] != in_features_) {
        throw ShapeError(this->where() + ": expected input (N, " + std::to_string(in_features_) + "), got " +
                         shape_str(x.shape()));
    }
    const std::size_t n = x.shape()[0], in = in_features_, out = out_features_;
    // y = b broadcast over the rows, then y += x W^T in place (gemm with beta = 1).
    xt::xarray<T> y = xt::xarray<T>::from_shape({n, out});
    if (bias_) {
        const T* b = bias_->value().data();
        for (std::size_t i = 0; i < n; ++i) std::copy(b, b + out, y.data() + i * out);
    } else {
        y.fill(T(0));
    }
    gemm<T>(false, true, n, out, in, T(1), x.value().data(), in, weight_->value().data(), in, T(1), y.data(), out);

    std::vector<typename Var<T>::NodePtr> inputs{x.node(), weight_->node()};
    if (bias_) inputs.push_back(bias_->node());
    return Var<T>::from_op(std::move(y), "linear", inputs, [inputs, n, in, out](const Node<T>&, const xt::xarray<T>& grad_out) {
        const T* g = grad_out.data();
        Node<T>& xn = *inputs[0];
        Node<T>& wn = *inputs[1];
        if (xn.requires_grad) gemm_into_grad(xn, false, false, n, in, out, g, out, wn.value.data(), in);  // g W
        if (wn.requires_grad) gemm_into_grad(wn, true, false, out, in, n, g, out, xn.value.data(), in);  // g^T x
        if (inputs.size() > 2 && inputs[2]->requires_grad) channel_sums_into_grad(*inputs[2], g, ChannelShape{n, out, 1});
    });
}

template class Linear<float>;
template class Linear<double>;

}  // namespace xgrad
