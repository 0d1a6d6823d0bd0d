#include "experiments/probes.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>

#include "autodiff/grad_mode.hpp"
#include "experiments/layer_lookup.hpp"
#include "experiments/percentiles.hpp"
#include "layers/cross_entropy.hpp"
#include "layers/init.hpp"
#include "layers/mode_guard.hpp"

namespace xgrad {

namespace {

// Everything a forward in training mode changes or draws from: weights (restored after the
// probe moves them), BN's running statistics and the random layers' generators.
class ModelState {
public:
    explicit ModelState(Sequential<float>& model) : model_(model) {
        for (const auto& p : model.parameters()) weights_.push_back(p.value());
        for (const auto& [name, buffer] : model.named_buffers()) {
            tensors_.push_back(buffer.tensor ? *buffer.tensor : xt::xarray<float>());
            counters_.push_back(buffer.counter ? *buffer.counter : 0);
        }
        for (const auto& [name, child] : model.named_children()) {
            if (Rng* g = child->generator()) generators_.push_back(*g);
        }
    }

    // Buffers and generators back to the saved state; weights too when `with_weights`.
    void restore(bool with_weights) {
        if (with_weights) {
            std::size_t k = 0;
            for (auto p : model_.parameters()) p.mutable_value() = weights_[k++];
        }
        std::size_t k = 0;
        for (const auto& [name, buffer] : model_.named_buffers()) {
            if (buffer.tensor) *buffer.tensor = tensors_[k];
            if (buffer.counter) *buffer.counter = counters_[k];
            ++k;
        }
        k = 0;
        for (const auto& [name, child] : model_.named_children()) {
            if (Rng* g = child->generator()) *g = generators_[k++];
        }
    }

    const std::vector<xt::xarray<float>>& weights() const { return weights_; }

private:
    Sequential<float>& model_;
    std::vector<xt::xarray<float>> weights_;
    std::vector<xt::xarray<float>> tensors_;
    std::vector<std::int64_t> counters_;
    std::vector<Rng> generators_;
};

struct LossAndGradient {
    double loss;
    std::vector<double> gradient;  // all parameters' gradients, concatenated
};

// One training-mode forward and backward on the batch, from the saved buffers and generators.
LossAndGradient loss_and_gradient(Sequential<float>& model, ModelState& state, const Batch& batch) {
    state.restore(false);
    model.zero_grad();
    const Var<float> loss = cross_entropy(model(Var<float>(batch.images)), batch.labels);
    loss.backward();
    LossAndGradient out{loss.value()(), {}};
    for (const auto& p : model.parameters()) out.gradient.insert(out.gradient.end(), p.grad().begin(), p.grad().end());
    model.zero_grad();
    return out;
}

double distance(const std::vector<double>& a, const std::vector<double>& b) {
    double sum = 0;
    for (std::size_t i = 0; i < a.size(); ++i) sum += (a[i] - b[i]) * (a[i] - b[i]);
    return std::sqrt(sum);
}


}  // namespace

ProbeValues unit_input_percentiles(Sequential<float>& model, const std::string& layer, std::size_t unit,
                                   const xt::xarray<float>& images) {
    Module<float>& target = layer_at(model, layer, "unit_input_percentiles");
    ModeGuard<float> mode(model);
    model.eval();
    NoGrad no_grad;
    xt::xarray<float> input;
    {
        const HookHandle hook = target.register_forward_hook([&input](const ForwardHookContext<float>& c) { input = c.input.value(); });
        (void)model(Var<float>(images));
    }
    if (input.dimension() != 2 || unit >= input.shape()[1]) {
        throw std::invalid_argument("unit_input_percentiles: the input of '" + layer + "' has shape " +
                                    shape_str(input.shape()) + ", no unit " + std::to_string(unit));
    }
    std::vector<float> values(input.shape()[0]);
    for (std::size_t i = 0; i < values.size(); ++i) values[i] = input(i, unit);
    const std::vector<double> p = percentiles(values, {0.15, 0.50, 0.85});
    return {{"p15", p[0]}, {"p50", p[1]}, {"p85", p[2]}};
}

ProbeValues landscape_along_gradient(Sequential<float>& model, const Batch& batch, double lr,
                                     const std::vector<double>& multipliers) {
    ModelState state(model);
    const LossAndGradient base = loss_and_gradient(model, state, batch);
    double gradient_norm = 0;
    for (double v : base.gradient) gradient_norm += v * v;
    gradient_norm = std::sqrt(gradient_norm);
    double lowest = base.loss, highest = base.loss, grad_change = 0, beta = 0;
    bool finite = std::isfinite(base.loss) && std::isfinite(gradient_norm);
    for (double multiplier : multipliers) {
        const double eta = lr * multiplier;
        std::size_t offset = 0, k = 0;
        for (auto p : model.parameters()) {
            auto& w = p.mutable_value();
            const auto& w0 = state.weights()[k++];
            for (std::size_t i = 0; i < w.size(); ++i) {
                w.data()[i] = static_cast<float>(w0.data()[i] - eta * base.gradient[offset + i]);
            }
            offset += w.size();
        }
        const LossAndGradient moved = loss_and_gradient(model, state, batch);
        const double change = distance(moved.gradient, base.gradient);
        // std::min/max would drop a NaN; a step that blows up makes the measure infinite instead.
        finite = finite && std::isfinite(moved.loss) && std::isfinite(change);
        lowest = std::min(lowest, moved.loss);
        highest = std::max(highest, moved.loss);
        grad_change = std::max(grad_change, change);
        if (gradient_norm > 0) beta = std::max(beta, change / (eta * gradient_norm));
    }
    state.restore(true);
    constexpr double inf = std::numeric_limits<double>::infinity();
    if (!finite) return {{"loss_range", inf}, {"grad_change", inf}, {"beta_smoothness", inf}};
    return {{"loss_range", highest - lowest}, {"grad_change", grad_change}, {"beta_smoothness", beta}};
}

}  // namespace xgrad
