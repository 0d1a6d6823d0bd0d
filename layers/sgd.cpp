#include "layers/sgd.hpp"

#include <stdexcept>
#include <string>

#include <xtensor/xnoalias.hpp>

#include "autodiff/grad_mode.hpp"

namespace xgrad {

template <class T>
SGD<T>::SGD(std::vector<Var<T>> params, const SgdOptions& options)
    : Optimizer<T>(std::move(params), options.lr), options_(options), momentum_buffers_(this->params_.size()) {
    if (!(options.momentum >= 0.0)) throw std::invalid_argument("Invalid momentum value: " + std::to_string(options.momentum));
    if (!(options.weight_decay >= 0.0)) {
        throw std::invalid_argument("Invalid weight_decay value: " + std::to_string(options.weight_decay));
    }
    if (options.nesterov && (options.momentum <= 0.0 || options.dampening != 0.0)) {
        throw std::invalid_argument("Nesterov momentum requires a momentum and zero dampening");
    }
}

template <class T>
SgdOptions SGD<T>::options() const {
    SgdOptions o = options_;
    o.lr = this->lr_;
    return o;
}

template <class T>
void SGD<T>::step() {
    NoGrad no_grad;
    const T lr = static_cast<T>(this->lr_);
    const T momentum = static_cast<T>(options_.momentum);
    const T weight_decay = static_cast<T>(options_.weight_decay);
    for (std::size_t i = 0; i < this->params_.size(); ++i) {
        Var<T>& p = this->params_[i];
        if (!p.has_grad()) continue;
        xt::xarray<T>& value = p.mutable_value();
        const xt::xarray<T>* d = &p.grad();
        xt::xarray<T> decayed;
        if (options_.weight_decay != 0.0) {
            decayed = *d + weight_decay * value;
            d = &decayed;
        }
        if (options_.momentum == 0.0) {
            value -= lr * *d;
            continue;
        }
        auto& buf = momentum_buffers_[i];
        if (!buf) {
            buf = *d;
        } else {
            xt::noalias(*buf) = *buf * momentum + static_cast<T>(1.0 - options_.dampening) * *d;
        }
        if (options_.nesterov) {
            value -= lr * (*d + momentum * *buf);
        } else {
            value -= lr * *buf;
        }
    }
}

template class SGD<float>;
template class SGD<double>;

}  // namespace xgrad
