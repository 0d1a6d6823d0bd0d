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

// A parameter's momentum buffer in this step: none (no momentum), set to the gradient (its first
// step), or moved (every later one).
enum class Momentum { none, first_step, running };

// What one parameter's update reads and writes.
template <class T>
struct SgdUpdate {
    const T* grad;
    T* target;  // the value
    T* buffer;  // null without momentum
    std::size_t size;
    Momentum momentum;
};

// torch's operations on one element, in its order and each rounded on its own (the build
// contracts no multiply-add): the bits of its per-operation form. GCC vectorizes the loop. Decay
// is a separate instantiation: d + 0·p is not d for a gradient of -0 or a parameter of ±inf or NaN.
template <bool decay, Momentum momentum, bool nesterov, class T>
void sgd_update(const SgdConstants<T>& c, const SgdUpdate<T>& u, std::size_t begin, std::size_t end) {
    const T* grad = u.grad;
    T* param = u.target;
    T* buffer = u.buffer;
    for (std::size_t i = begin; i < end; ++i) {
        T d = grad[i];
        if constexpr (decay) d = d + c.weight_decay * param[i];
        if constexpr (momentum == Momentum::first_step) buffer[i] = d;
        if constexpr (momentum == Momentum::running) buffer[i] = buffer[i] * c.momentum + c.one_minus_dampening * d;
        if constexpr (momentum != Momentum::none) d = nesterov ? d + c.momentum * buffer[i] : buffer[i];
        param[i] = param[i] - c.lr * d;
    }
}

// The instantiation for a parameter's case; Nesterov only with momentum, as the options allow.
template <bool decay, class T>
void sgd_update_case(bool nesterov, const SgdConstants<T>& c, const SgdUpdate<T>& u, std::size_t begin,
                     std::size_t end) {
    switch (u.momentum) {
        case Momentum::none: return sgd_update<decay, Momentum::none, false>(c, u, begin, end);
        case Momentum::first_step:
            return nesterov ? sgd_update<decay, Momentum::first_step, true>(c, u, begin, end)
                            : sgd_update<decay, Momentum::first_step, false>(c, u, begin, end);
        case Momentum::running:
            return nesterov ? sgd_update<decay, Momentum::running, true>(c, u, begin, end)
                            : sgd_update<decay, Momentum::running, false>(c, u, begin, end);
    }
}

}  // namespace

// One pass over every element of every parameter (for_each_parameter_piece): the gradient, the
// value and the momentum buffer of each element are read once and written once.
template <class T>
void SGD<T>::step() {
    NoGrad no_grad;
    this->check_gradients("SGD", momentum_buffers_.size());
    for (std::size_t i = 0; i < momentum_buffers_.size(); ++i) {
        if (this->params_[i].has_grad() && momentum_buffers_[i]) {
            this->check_shape("SGD", i, *momentum_buffers_[i], "momentum buffer");
        }
    }
    const SgdConstants<T> constants{static_cast<T>(this->lr_), static_cast<T>(options_.momentum),
                                    static_cast<T>(1.0 - options_.dampening), static_cast<T>(options_.weight_decay)};
    std::vector<SgdUpdate<T>> updates;
    for (std::size_t i = 0; i < this->params_.size(); ++i) {
        Var<T>& p = this->params_[i];
        if (!p.has_grad()) continue;
        xt::xarray<T>& value = p.mutable_value();
        Momentum momentum = Momentum::none;
        T* buffer = nullptr;
        if (options_.momentum != 0.0) {
            auto& held = momentum_buffers_[i];
            momentum = held ? Momentum::running : Momentum::first_step;
            if (!held) held.emplace(value.shape());  // written by the step before it is read
            buffer = held->data();
        }
        updates.push_back({p.grad().data(), value.data(), buffer, value.size(), momentum});
    }
    const bool decay = options_.weight_decay != 0.0, nesterov = options_.nesterov;
    for_each_parameter_piece(updates, [&](const SgdUpdate<T>& u, std::size_t begin, std::size_t end) {
        decay ? sgd_update_case<true>(nesterov, constants, u, begin, end)
              : sgd_update_case<false>(nesterov, constants, u, begin, end);
    });
}

template class SGD<float>;
template class SGD<double>;

}  // namespace xgrad
