// DistributionNoise: the noise of Santurkar et al. 2018 ("How Does Batch Normalization Help
// Optimization?", §2), put after a BatchNorm to make the distribution of its output unstable on
// purpose. In training, every forward draws, for each unit j (a feature, or a channel of an
// (N, C, ...) input), a mean shift mu_j ~ U(-0.5, 0.5) and a scale sigma_j ~ U(1, 1.25), then for
// each sample i m_ij ~ U(mu_j - 0.1, mu_j + 0.1) and s_ij ~ N(sigma_j, 0.1), and returns
// a_ij * s_ij + m_ij (one s, m per sample and channel, shared over the spatial positions). In eval
// mode it is the identity. Draws come from the layer's own seeded generator.
#pragma once

#include <cstdint>
#include <string>

#include "autodiff/var.hpp"
#include "layers/init.hpp"
#include "layers/module.hpp"

namespace xgrad {

template <class T>
class DistributionNoise : public Module<T> {
public:
    explicit DistributionNoise(std::uint64_t seed);

    // x: (N, C) or (N, C, ...), at least 2-D; otherwise std::invalid_argument naming the layer.
    Var<T> forward(const Var<T>& x) override;
    std::string describe() const override { return "DistributionNoise()"; }
    Rng* generator() override { return &rng_; }

private:
    Rng rng_;
};

extern template class DistributionNoise<float>;
extern template class DistributionNoise<double>;

}  // namespace xgrad
