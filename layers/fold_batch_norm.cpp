#include "layers/fold_batch_norm.hpp"

#include <cmath>
#include <cstddef>
#include <stdexcept>
#include <string>

#include "layers/init.hpp"

namespace xgrad {

template <class T>
std::shared_ptr<Conv2d<T>> fold_batch_norm(const Conv2d<T>& conv, const BatchNorm2d<T>& bn) {
    const std::size_t out = conv.out_channels();
    if (bn.num_features() != out) {
        throw ShapeError("fold_batch_norm: " + bn.where() + " normalizes " + std::to_string(bn.num_features()) +
                         " channels, expected " + std::to_string(out) + ", the out_channels of " + conv.where());
    }
    if (!bn.running_mean()) {
        throw std::invalid_argument("fold_batch_norm: " + bn.where() + " keeps no running statistics to fold");
    }
    // The initial values it draws are all overwritten: a local generator leaves the global one alone.
    Rng unused;
    auto folded = std::make_shared<Conv2d<T>>(conv.in_channels(), out, conv.kernel_size(), conv.stride(),
                                              conv.padding(), true, unused);
    // The weight conv convolves with: standardized, if conv standardizes it; the folded conv does not.
    const Var<T> applied = conv.applied_weight();
    const xt::xarray<T>& w = applied.value();
    xt::xarray<T>& fw = folded->weight().mutable_value();
    xt::xarray<T>& fb = folded->bias()->mutable_value();
    const std::size_t per_channel = w.size() / out;
    const double eps = bn.options().eps;
    // In double, each folded value rounded to T once.
    for (std::size_t o = 0; o < out; ++o) {
        const double gamma = bn.weight() ? static_cast<double>(bn.weight()->value()(o)) : 1.0;
        const double beta = bn.bias() ? static_cast<double>(bn.bias()->value()(o)) : 0.0;
        const double s = gamma / std::sqrt(static_cast<double>((*bn.running_var())(o)) + eps);
        for (std::size_t k = o * per_channel; k < (o + 1) * per_channel; ++k) {
            fw.flat(k) = static_cast<T>(static_cast<double>(w.flat(k)) * s);
        }
        const double b = conv.bias() ? static_cast<double>(conv.bias()->value()(o)) : 0.0;
        fb(o) = static_cast<T>((b - static_cast<double>((*bn.running_mean())(o))) * s + beta);
    }
    return folded;
}

template std::shared_ptr<Conv2d<float>> fold_batch_norm(const Conv2d<float>&, const BatchNorm2d<float>&);
template std::shared_ptr<Conv2d<double>> fold_batch_norm(const Conv2d<double>&, const BatchNorm2d<double>&);

}  // namespace xgrad
