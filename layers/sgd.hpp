// SGD with momentum, dampening, weight decay and Nesterov momentum, exactly as torch.optim.SGD
// (1.13): d = grad + weight_decay * p; buf = d on the first step, then
// buf = momentum * buf + (1 - dampening) * d; d = nesterov ? d + momentum * buf : buf; p -= lr * d.
#pragma once

#include <limits>
#include <optional>
#include <vector>

#include <xtensor/xarray.hpp>

#include "layers/optimizer.hpp"

namespace xgrad {

struct SgdOptions {
    // Required, as in torch: the NaN default is rejected.
    double lr = std::numeric_limits<double>::quiet_NaN();
    double momentum = 0.0;
    double dampening = 0.0;
    double weight_decay = 0.0;
    bool nesterov = false;
};

template <class T>
class SGD : public Optimizer<T> {
public:
    // SGD<float> opt(model.parameters(), {.lr = 0.1, .momentum = 0.9});
    // Invalid options (as torch rejects them) are a std::invalid_argument.
    SGD(std::vector<Var<T>> params, const SgdOptions& options);

    void step() override;

    SgdOptions options() const;
    // One per parameter, in order; empty until that parameter's first step with momentum.
    std::vector<std::optional<xt::xarray<T>>>& momentum_buffers() { return momentum_buffers_; }

private:
    SgdOptions options_;
    std::vector<std::optional<xt::xarray<T>>> momentum_buffers_;
};

extern template class SGD<float>;
extern template class SGD<double>;

}  // namespace xgrad
