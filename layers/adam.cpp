#include "layers/adam.hpp"

#include <cmath>
#include <stdexcept>
#include <string>
#include <vector>

#include <xsimd/xsimd.hpp>
#include <xtensor/xbuilder.hpp>

#include "autodiff/grad_mode.hpp"
#include "layers/parameter_pieces.hpp"

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

namespace {

// One step's constants of one parameter, in T as torch's per-operation form rounds them.
template <class T>
struct AdamConstants {
    T weight_decay, beta1, one_minus_beta1, beta2, one_minus_beta2, minus_step_size, correction2_sqrt, eps;
};

// torch's operations (mul_, add_, addcmul_, addcdiv_) on one element (T) or one vector of them
// (xsimd::batch<T>), in its order and each rounded on its own (the build contracts no
// multiply-add), so that both give the same bits. Decay is a separate instantiation: g + 0·p is
// not g for a gradient of -0 (-0 + 0 = +0) or a parameter of ±inf or NaN.
template <bool decay, class V, class T>
void adam_values(V& p, V& m, V& v, V g, const AdamConstants<T>& c) {
    using std::sqrt;
    if constexpr (decay) g = g + V(c.weight_decay) * p;
    m = m * V(c.beta1) + V(c.one_minus_beta1) * g;
    v = v * V(c.beta2) + V(c.one_minus_beta2) * g * g;
    p = p + V(c.minus_step_size) * m / (sqrt(v) / V(c.correction2_sqrt) + V(c.eps));
}

// What one parameter's update reads and writes: its gradient, value and moments.
template <class T>
struct AdamUpdate {
    const T* grad;
    T* target;  // the value
    T* exp_avg;
    T* exp_avg_sq;
    std::size_t size;
    AdamConstants<T> constants;
};

template <bool decay, class T>
void adam_update(const AdamUpdate<T>& u, std::size_t begin, std::size_t end) {
    using Batch = xsimd::batch<T>;
    std::size_t i = begin;
    for (; i + Batch::size <= end; i += Batch::size) {
        Batch p = Batch::load_unaligned(u.target + i), m = Batch::load_unaligned(u.exp_avg + i),
              v = Batch::load_unaligned(u.exp_avg_sq + i);
        adam_values<decay>(p, m, v, Batch::load_unaligned(u.grad + i), u.constants);
        p.store_unaligned(u.target + i);
        m.store_unaligned(u.exp_avg + i);
        v.store_unaligned(u.exp_avg_sq + i);
    }
    for (; i < end; ++i) adam_values<decay>(u.target[i], u.exp_avg[i], u.exp_avg_sq[i], u.grad[i], u.constants);
}

}  // namespace

// One pass over every element of every parameter (for_each_parameter_piece): each element's
// gradient, value and moments are read once and written once, where a pass per operation would
// read and write the moments again.
template <class T>
void Adam<T>::step() {
    NoGrad no_grad;
    this->check_gradients("Adam", state_.size());
    for (std::size_t i = 0; i < state_.size(); ++i) {
        if (!this->params_[i].has_grad() || state_[i].step == 0) continue;
        this->check_shape("Adam", i, state_[i].exp_avg, "exp_avg");
        this->check_shape("Adam", i, state_[i].exp_avg_sq, "exp_avg_sq");
    }
    const auto [beta1, beta2] = options_.betas;
    std::vector<AdamUpdate<T>> updates;
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
        // The bias corrections in double, as torch computes them in Python floats.
        const double t = static_cast<double>(s.step);
        const double step_size = this->lr_ / (1.0 - std::pow(beta1, t));
        const double correction2_sqrt = std::sqrt(1.0 - std::pow(beta2, t));
        updates.push_back({p.grad().data(), value.data(), s.exp_avg.data(), s.exp_avg_sq.data(), value.size(),
                           {static_cast<T>(options_.weight_decay), static_cast<T>(beta1), static_cast<T>(1.0 - beta1),
                            static_cast<T>(beta2), static_cast<T>(1.0 - beta2), static_cast<T>(-step_size),
                            static_cast<T>(correction2_sqrt), static_cast<T>(options_.eps)}});
    }
    const bool decay = options_.weight_decay != 0.0;
    for_each_parameter_piece(updates, [decay](const AdamUpdate<T>& u, std::size_t begin, std::size_t end) {
        decay ? adam_update<true>(u, begin, end) : adam_update<false>(u, begin, end);
    });
}

template class Adam<float>;
template class Adam<double>;

}  // namespace xgrad
