#include "layers/sgd.hpp"

#include <stdexcept>
#include <string>
#include <vector>

#include "autodiff/grad_mode.hpp"
#include "layers/parameter_pieces.hpp"

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

namespace {

// The step's constants, in T as torch's per-operation form rounds them.
template <class T>
struct SgdConstants {
    T lr, momentum, one_minus_dampening, weight_decay;
};

// What the step does, fixed for all its elements: decay (g + 0·p is not g for a parameter of -0
// or inf), and momentum's three cases.
enum class Momentum { none, first_step, running };

// torch's operations on one element, in its order and without contraction: torch's bits. GCC
// vectorizes the loop (no division or square root to keep it scalar).
template <bool decay, Momentum momentum, bool nesterov, class T>
void sgd_update(const SgdConstants<T>& k, const T* grad, T* param, T* buffer, std::size_t begin, std::size_t end) {
    for (std::size_t i = begin; i < end; ++i) {
        T d = grad[i];
        if constexpr (decay) d = d + k.weight_decay * param[i];
        if constexpr (momentum == Momentum::first_step) buffer[i] = d;
        if constexpr (momentum == Momentum::running) buffer[i] = buffer[i] * k.momentum + k.one_minus_dampening * d;
        if constexpr (momentum != Momentum::none) d = nesterov ? d + k.momentum * buffer[i] : buffer[i];
        param[i] = param[i] - k.lr * d;
    }
}

template <bool decay, Momentum momentum, class T>
void sgd_update(bool nesterov, const SgdConstants<T>& k, const T* grad, T* param, T* buffer, std::size_t begin,
                std::size_t end) {
    if (nesterov) {
        sgd_update<decay, momentum, true>(k, grad, param, buffer, begin, end);
    } else {
        sgd_update<decay, momentum, false>(k, grad, param, buffer, begin, end);
    }
}

template <bool decay, class T>
void sgd_update(Momentum momentum, bool nesterov, const SgdConstants<T>& k, const T* grad, T* param, T* buffer,
                std::size_t begin, std::size_t end) {
    switch (momentum) {
        case Momentum::none: return sgd_update<decay, Momentum::none>(nesterov, k, grad, param, buffer, begin, end);
        case Momentum::first_step:
            return sgd_update<decay, Momentum::first_step>(nesterov, k, grad, param, buffer, begin, end);
        case Momentum::running: return sgd_update<decay, Momentum::running>(nesterov, k, grad, param, buffer, begin, end);
    }
}

}  // namespace

// One pass over every element of every parameter, as torch's fused optimizers: the gradient,
// the value and the momentum buffer of each element are read once and written once.
template <class T>
void SGD<T>::step() {
    NoGrad no_grad;
    const SgdConstants<T> constants{static_cast<T>(this->lr_), static_cast<T>(options_.momentum),
                                    static_cast<T>(1.0 - options_.dampening), static_cast<T>(options_.weight_decay)};
    struct Tensors {
        const T* grad;
        T* param;
        T* buffer;
        Momentum momentum;
    };
    std::vector<Tensors> tensors;
    std::vector<std::size_t> sizes;
    for (std::size_t i = 0; i < this->params_.size(); ++i) {
        Var<T>& p = this->params_[i];
        if (!p.has_grad()) continue;
        xt::xarray<T>& value = p.mutable_value();
        Momentum momentum = Momentum::none;
        T* buffer = nullptr;
        if (options_.momentum != 0.0) {
            auto& held = momentum_buffers_[i];
            momentum = held ? Momentum::running : Momentum::first_step;
            if (!held) {
                held.emplace(value.shape());
            } else if (held->shape() != value.shape()) {
                throw std::invalid_argument("SGD: the momentum buffer of parameter " + std::to_string(i) + " has " +
                                            std::to_string(held->size()) + " elements in a shape other than the parameter's (" +
                                            std::to_string(value.size()) + " elements)");
            }
            buffer = held->data();
        }
        tensors.push_back({p.grad().data(), value.data(), buffer, momentum});
        sizes.push_back(value.size());
    }
    const bool decay = options_.weight_decay != 0.0;
    for_each_parameter_piece(sizes, [&](std::size_t k, std::size_t begin, std::size_t end) {
        const Tensors& t = tensors[k];
        if (decay) {
            sgd_update<true>(t.momentum, options_.nesterov, constants, t.grad, t.param, t.buffer, begin, end);
        } else {
            sgd_update<false>(t.momentum, options_.nesterov, constants, t.grad, t.param, t.buffer, begin, end);
        }
    });
}

template class SGD<float>;
template class SGD<double>;

}  // namespace xgrad
