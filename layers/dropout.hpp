// Dropout: in training, zeroes each element with probability p and scales the others by
// 1/(1-p) (inverted dropout, as torch.nn.Dropout); in eval mode, the identity. Masks come from
// the layer's own seeded generator, so a run is reproducible; backward multiplies by the same mask.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "autodiff/var.hpp"
#include "layers/init.hpp"
#include "layers/module.hpp"

namespace xgrad {

template <class T>
class Dropout : public Module<T> {
public:
    // Without a seed, the generator is seeded from default_rng(). p outside [0, 1] is a
    // std::invalid_argument.
    explicit Dropout(double p = 0.5, std::optional<std::uint64_t> seed = std::nullopt);

    Var<T> forward(const Var<T>& x) override;
    std::string describe() const override;

    double p() const { return p_; }
    Rng* generator() override { return &rng_; }

private:
    double p_;
    Rng rng_;
};

extern template class Dropout<float>;
extern template class Dropout<double>;

}  // namespace xgrad
