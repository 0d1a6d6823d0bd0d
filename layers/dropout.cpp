#include "layers/dropout.hpp"

#include <sstream>
#include <stdexcept>

#include "autodiff/elementwise_ops.hpp"

namespace xgrad {

template <class T>
Dropout<T>::Dropout(double p, std::optional<std::uint64_t> seed)
    : p_(p), rng_(seed ? *seed : default_rng().next_seed()) {
    if (!(p >= 0.0 && p <= 1.0)) {
        throw std::invalid_argument("Dropout: probability has to be between 0 and 1, but got " + std::to_string(p));
    }
}

template <class T>
std::string Dropout<T>::describe() const {
    std::ostringstream s;
    s << "Dropout(p=" << p_ << ")";
    return s.str();
}

template <class T>
Var<T> Dropout<T>::forward(const Var<T>& x) {
    if (!this->is_training() || p_ == 0.0) return x;
    // Kept elements carry the scale 1/(1-p); with p = 1 nothing is kept and nothing is divided.
    const T scale = p_ < 1.0 ? static_cast<T>(1.0 / (1.0 - p_)) : T(0);
    xt::xarray<T> mask = xt::xarray<T>::from_shape(x.value().shape());
    for (auto& m : mask) m = rng_.uniform() >= p_ ? scale : T(0);
    return x * Var<T>(std::move(mask));
}

template class Dropout<float>;
template class Dropout<double>;

}  // namespace xgrad
