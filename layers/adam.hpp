// Adam, exactly as torch.optim.Adam (1.13, amsgrad off): with g = grad + weight_decay * p,
// m = beta1 * m + (1 - beta1) * g, v = beta2 * v + (1 - beta2) * g²,
// p -= lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps), t counted per parameter.
#pragma once

#include <cstdint>
#include <utility>
#include <vector>

#include <xtensor/xarray.hpp>

#include "layers/optimizer.hpp"

namespace xgrad {

struct AdamOptions {
    double lr = 1e-3;
    std::pair<double, double> betas{0.9, 0.999};
    double eps = 1e-8;
    double weight_decay = 0.0;
};

// One parameter's state, as torch's optimizer.state[p]; the moments exist once step > 0.
template <class T>
struct AdamState {
    std::int64_t step = 0;
    xt::xarray<T> exp_avg;
    xt::xarray<T> exp_avg_sq;
};

template <class T>
class Adam : public Optimizer<T> {
public:
    // Adam<float> opt(model.parameters(), {.lr = 1e-3});
    // Invalid options (as torch rejects them) are a std::invalid_argument.
    Adam(std::vector<Var<T>> params, const AdamOptions& options = {});

    void step() override;

    AdamOptions options() const;
    // One per parameter, in order.
    std::vector<AdamState<T>>& state() { return state_; }

private:
    AdamOptions options_;
    std::vector<AdamState<T>> state_;
};

extern template class Adam<float>;
extern template class Adam<double>;

}  // namespace xgrad
