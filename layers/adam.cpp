#include "layers/adam.hpp"

#include <cmath>
#include <stdexcept>
#include <string>

#include <xtensor/xmath.hpp>
#include <xtensor/xnoalias.hpp>

#include "autodiff/grad_mode.hpp"

namespace xgrad {

template <class T>
Adam<T>::Adam(std::vector<Var<T>> params, const AdamOptions& options)
    : Optimizer<T>(std::move(params), options.lr), options_(options), state_(this->params_.size()) {
    const auto [beta1, beta2] = options.betas;
    if (!(options.eps >= 0.0)) throw std::invalid_argument("Invalid epsilon value: " + std::to_string(options.eps));
    if (!(beta1 >= 0.0 && beta1 < 1.0)) throw std::invalid_argument("Invalid beta parameter at index 0: " + std::to_string(beta1));
    if (!(beta2 >= 0.0 && beta2 < 1.0)) throw std::invalid_argument("Invalid beta parameter at index 1: " + std::to_string(beta2));
    if (!(options.weight_decay >= 0.0)) {
        throw std::invalid_argument("Invalid weight_decay value: " + std::to_string(options.weight_decay));
    }
}

template <class T>
AdamOptions Adam<T>::options() const {
    AdamOptions o = options_;
    o.lr = this->lr_;
    return o;
}

template <class T>
void Adam<T>::step() {
    NoGrad no_grad;
    const auto [beta1, beta2] = options_.betas;
    const T weight_decay = static_cast<T>(options_.weight_decay);
    for (std::size_t i = 0; i < this->params_.size(); ++i) {
        Var<T>& p = this->params_[i];
        if (!p.has_grad()) continue;
        xt::xarray<T>& value = p.mutable_value();
        AdamState<T>& s = state_[i];
        if (s.step == 0) {
            s.exp_avg = xt::zeros<T>(value.shape());
            s.exp_avg_sq = xt::zeros<T>(value.shape());
        }
        ++s.step;
        const xt::xarray<T>* g = &p.grad();
        xt::xarray<T> decayed;
        if (options_.weight_decay != 0.0) {
            decayed = *g + weight_decay * value;
            g = &decayed;
        }
        // In place (noalias: each element reads only itself), in the order of torch's mul_, add_, addcmul_.
        xt::noalias(s.exp_avg) = s.exp_avg * static_cast<T>(beta1) + static_cast<T>(1.0 - beta1) * *g;
        xt::noalias(s.exp_avg_sq) = s.exp_avg_sq * static_cast<T>(beta2) + static_cast<T>(1.0 - beta2) * *g * *g;
        // The bias corrections in double, as torch computes them in Python floats.
        const double t = static_cast<double>(s.step);
        const double step_size = this->lr_ / (1.0 - std::pow(beta1, t));
        const double correction2_sqrt = std::sqrt(1.0 - std::pow(beta2, t));
        value += static_cast<T>(-step_size) * s.exp_avg /
                 (xt::sqrt(s.exp_avg_sq) / static_cast<T>(correction2_sqrt) + static_cast<T>(options_.eps));
    }
}

template class Adam<float>;
template class Adam<double>;

}  // namespace xgrad
