#include "experiments/probes.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <span>
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

double dot(std::span<const double> a, std::span<const double> b) {
    double sum = 0;
    for (std::size_t i = 0; i < a.size(); ++i) sum += a[i] * b[i];
    return sum;
}

double distance(std::span<const double> a, std::span<const double> b) {
    double sum = 0;
    for (std::size_t i = 0; i < a.size(); ++i) sum += (a[i] - b[i]) * (a[i] - b[i]);
    return std::sqrt(sum);
}

// cos(a, b): 1 when a = b (two zero vectors among them), 0 when only one of them is zero.
double cosine(std::span<const double> a, std::span<const double> b) {
    if (std::equal(a.begin(), a.end(), b.begin())) return 1.0;
    const double norms = std::sqrt(dot(a, a) * dot(b, b));
    return norms > 0 ? dot(a, b) / norms : 0.0;
}

// The first `moved` parameters at their saved value minus eta times their part of `gradient`
// (all parameters' gradients, concatenated), the others at their saved value.
void step_first_parameters(Sequential<float>& model, const ModelState& state, const std::vector<double>& gradient,
                           double eta, std::size_t moved) {
    std::size_t offset = 0, k = 0;
    for (auto p : model.parameters()) {
        auto& w = p.mutable_value();
        const auto& w0 = state.weights()[k];
        for (std::size_t i = 0; i < w.size(); ++i) {
            w.data()[i] = k < moved ? static_cast<float>(w0.data()[i] - eta * gradient[offset + i]) : w0.data()[i];
        }
        offset += w.size();
        ++k;
    }
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
    const std::size_t all = state.weights().size();
    const double gradient_norm_sq = dot(base.gradient, base.gradient);
    double lowest = base.loss, highest = base.loss, grad_change = 0, beta = 0, first_order_error = 0, lowest_cosine = 1;
    bool finite = std::isfinite(base.loss) && std::isfinite(gradient_norm_sq);
    for (double multiplier : multipliers) {
        const double eta = lr * multiplier;
        step_first_parameters(model, state, base.gradient, eta, all);
        const LossAndGradient moved = loss_and_gradient(model, state, batch);
        const double change = distance(moved.gradient, base.gradient);
        // std::min/max would drop a NaN; a step that blows up makes the measure infinite instead.
        finite = finite && std::isfinite(moved.loss) && std::isfinite(change);
        lowest = std::min(lowest, moved.loss);
        highest = std::max(highest, moved.loss);
        grad_change = std::max(grad_change, change);
        lowest_cosine = std::min(lowest_cosine, cosine(base.gradient, moved.gradient));
        if (gradient_norm_sq > 0) {
            const double promised_decrease = eta * gradient_norm_sq;
            beta = std::max(beta, change / (eta * std::sqrt(gradient_norm_sq)));
            first_order_error = std::max(first_order_error, std::abs(moved.loss - (base.loss - promised_decrease)) / promised_decrease);
        }
    }
    state.restore(true);
    constexpr double inf = std::numeric_limits<double>::infinity();
    if (!finite) {
        return {{"loss", base.loss}, {"loss_min", lowest}, {"loss_max", inf}, {"loss_range", inf}, {"grad_change", inf},
                {"beta_smoothness", inf}, {"first_order_error", inf}, {"gradient_cosine", -1.0}};
    }
    return {{"loss", base.loss},
            {"loss_min", lowest},
            {"loss_max", highest},
            {"loss_range", highest - lowest},
            {"grad_change", grad_change},
            {"beta_smoothness", beta},
            {"first_order_error", first_order_error},
            {"gradient_cosine", lowest_cosine}};
}

ProbeValues internal_covariate_shift(Sequential<float>& model, const Batch& batch, double lr,
                                     const std::vector<std::string>& layers) {
    const auto named = model.named_parameters();
    std::vector<std::size_t> offsets{0};  // of each parameter in the concatenated gradient, then the end
    for (const auto& [name, p] : named) offsets.push_back(offsets.back() + p.value().size());
    struct LayerParameters {
        std::string path;
        std::size_t first, end;  // its parameters' indices
    };
    std::vector<LayerParameters> found;
    for (const std::string& path : layers) {
        LayerParameters l{path, named.size(), 0};
        for (std::size_t k = 0; k < named.size(); ++k) {
            if (named[k].first.starts_with(path + ".")) {
                l.first = std::min(l.first, k);
                l.end = k + 1;
            }
        }
        if (l.end == 0) {
            std::string known;
            for (const auto& [name, p] : named) known += (known.empty() ? "" : ", ") + name;
            throw std::invalid_argument("internal_covariate_shift: no layer with parameters at '" + path +
                                        "' (the model's parameters: " + known + ")");
        }
        found.push_back(l);
    }
    ModelState state(model);
    const LossAndGradient base = loss_and_gradient(model, state, batch);
    ProbeValues out;
    for (const LayerParameters& l : found) {
        step_first_parameters(model, state, base.gradient, lr, l.first);
        const LossAndGradient shifted = loss_and_gradient(model, state, batch);
        const std::size_t begin = offsets[l.first], size = offsets[l.end] - begin;
        const std::span<const double> before(base.gradient.data() + begin, size), after(shifted.gradient.data() + begin, size);
        const double change = distance(before, after), cos = cosine(before, after);
        const bool finite = std::isfinite(change) && std::isfinite(cos);
        out.emplace_back("ics_" + l.path, finite ? change : std::numeric_limits<double>::infinity());
        out.emplace_back("ics_cos_" + l.path, finite ? cos : -1.0);
    }
    state.restore(true);
    return out;
}

}  // namespace xgrad
