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

// One step's constants of one parameter, in T as the three-pass form torch runs (mul_, add_,
// addcmul_, addcdiv_) rounds them.
template <class T>
struct AdamConstants {
    T weight_decay, beta1, one_minus_beta1, beta2, one_minus_beta2, minus_step_size, correction2_sqrt, eps;
};

// torch's operations on one element (T) or one vector of them (xsimd::batch<T>), in its order and
// without contraction, so both give torch's bits. Decay is a separate instantiation: g + 0·p is
// not g for a parameter of -0 or inf.
template <bool decay, class V, class T>
void adam_values(V& p, V& m, V& v, V g, const AdamConstants<T>& k) {
    using std::sqrt;
    if constexpr (decay) g = g + V(k.weight_decay) * p;
    m = m * V(k.beta1) + V(k.one_minus_beta1) * g;
    v = v * V(k.beta2) + V(k.one_minus_beta2) * g * g;
    p = p + V(k.minus_step_size) * m / (sqrt(v) / V(k.correction2_sqrt) + V(k.eps));
}

template <bool decay, class T>
void adam_update(const AdamConstants<T>& k, const T* grad, T* param, T* exp_avg, T* exp_avg_sq, std::size_t begin,
                 std::size_t end) {
    using Batch = xsimd::batch<T>;
    std::size_t i = begin;
    for (; i + Batch::size <= end; i += Batch::size) {
        Batch p = Batch::load_unaligned(param + i), m = Batch::load_unaligned(exp_avg + i),
              v = Batch::load_unaligned(exp_avg_sq + i);
        adam_values<decay>(p, m, v, Batch::load_unaligned(grad + i), k);
        p.store_unaligned(param + i);
        m.store_unaligned(exp_avg + i);
        v.store_unaligned(exp_avg_sq + i);
    }
    for (; i < end; ++i) adam_values<decay>(param[i], exp_avg[i], exp_avg_sq[i], grad[i], k);
}

// The moments a parameter's next step reads: zeros before its first step, else the held ones,
// which must match the parameter (state() is writable).
template <class T>
void prepare_moments(AdamState<T>& s, const xt::xarray<T>& value, std::size_t index) {
    if (s.step == 0) {
        s.exp_avg = xt::zeros<T>(value.shape());
        s.exp_avg_sq = xt::zeros<T>(value.shape());
    } else if (s.exp_avg.shape() != value.shape() || s.exp_avg_sq.shape() != value.shape()) {
        throw std::invalid_argument("Adam: the moments of parameter " + std::to_string(index) + " have " +
                                    std::to_string(s.exp_avg.size()) + " and " + std::to_string(s.exp_avg_sq.size()) +
                                    " elements in shapes other than the parameter's (" + std::to_string(value.size()) +
                                    " elements)");
    }
}

}  // namespace

// One pass over every element of every parameter, as torch's fused Adam (a pass per operation, as
// its for-each form makes, would read and write the moments again): each element's gradient, value
// and moments are read once and written once.
template <class T>
void Adam<T>::step() {
    NoGrad no_grad;
    const auto [beta1, beta2] = options_.betas;
    struct Tensors {
        const T* grad;
        T* param;
        T* exp_avg;
        T* exp_avg_sq;
        AdamConstants<T> constants;
    };
    std::vector<Tensors> tensors;
    std::vector<std::size_t> sizes;
    for (std::size_t i = 0; i < this->params_.size(); ++i) {
        Var<T>& p = this->params_[i];
        if (!p.has_grad()) continue;
        xt::xarray<T>& value = p.mutable_value();
        AdamState<T>& s = state_[i];
        prepare_moments(s, value, i);
        ++s.step;
        // The bias corrections in double, as torch computes them in Python floats.
        const double t = static_cast<double>(s.step);
        const double step_size = this->lr_ / (1.0 - std::pow(beta1, t));
        const double correction2_sqrt = std::sqrt(1.0 - std::pow(beta2, t));
        tensors.push_back({p.grad().data(), value.data(), s.exp_avg.data(), s.exp_avg_sq.data(),
                           {static_cast<T>(options_.weight_decay), static_cast<T>(beta1), static_cast<T>(1.0 - beta1),
                            static_cast<T>(beta2), static_cast<T>(1.0 - beta2), static_cast<T>(-step_size),
                            static_cast<T>(correction2_sqrt), static_cast<T>(options_.eps)}});
        sizes.push_back(value.size());
    }
    const bool decay = options_.weight_decay != 0.0;
    for_each_parameter_piece(sizes, [&](std::size_t k, std::size_t begin, std::size_t end) {
        const Tensors& t = tensors[k];
        if (decay) {
            adam_update<true>(t.constants, t.grad, t.param, t.exp_avg, t.exp_avg_sq, begin, end);
        } else {
            adam_update<false>(t.constants, t.grad, t.param, t.exp_avg, t.exp_avg_sq, begin, end);
        }
    });
}

template class Adam<float>;
template class Adam<double>;

}  // namespace xgrad
