#include "experiments/activation_statistics.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>

#include <xtensor/xview.hpp>

#include "autodiff/grad_mode.hpp"
#include "experiments/layer_lookup.hpp"
#include "experiments/percentiles.hpp"
#include "layers/activations.hpp"
#include "layers/mode_guard.hpp"

namespace xgrad {

namespace {

constexpr std::size_t batch_images = 500;

bool is_nonlinearity(const Module<float>& layer) {
    return dynamic_cast<const ReLU<float>*>(&layer) || dynamic_cast<const Sigmoid<float>*>(&layer) ||
           dynamic_cast<const Tanh<float>*>(&layer);
}

bool saturates(const Module<float>& layer) {
    return dynamic_cast<const Sigmoid<float>*>(&layer) || dynamic_cast<const Tanh<float>*>(&layer);
}

// Every value a layer's hook collected over the batches.
struct Collected {
    Module<float>* layer = nullptr;
    std::size_t step = 0;
    std::vector<float> values;
};

ActivationStatistics statistics_of(const std::string& name, Collected& c) {
    ActivationStatistics s{c.step, name, 0, 0, 0, 0, 0, std::nullopt};
    const double n = static_cast<double>(c.values.size());
    double sum = 0, saturated = 0;
    for (float v : c.values) {
        sum += v;
        saturated += std::abs(v) > saturation_threshold;
    }
    s.mean = sum / n;
    double squares = 0;
    for (float v : c.values) squares += (v - s.mean) * (v - s.mean);
    s.std = std::sqrt(squares / n);
    if (saturates(*c.layer)) s.saturated = saturated / n;
    if (std::isnan(s.mean)) {  // selection needs an order, which a NaN breaks
        s.p15 = s.p50 = s.p85 = std::numeric_limits<double>::quiet_NaN();
        return s;
    }
    const std::vector<double> p = percentiles(c.values, {0.15, 0.50, 0.85});
    s.p15 = p[0];
    s.p50 = p[1];
    s.p85 = p[2];
    return s;
}

}  // namespace

void check_recorded_layers(const Module<float>& model, const std::vector<std::string>& layers) {
    for (const auto& name : layers) (void)layer_at(model, name, "--record-activations");
}

std::vector<ActivationStatistics> activation_statistics(Module<float>& model, const std::vector<std::string>& layers,
                                                        const xt::xarray<float>& images) {
    std::vector<Collected> collected(layers.size());
    std::vector<HookHandle> hooks;
    for (std::size_t k = 0; k < layers.size(); ++k) {
        Collected& c = collected[k];
        c.layer = &layer_at(model, layers[k], "--record-activations");
        const bool input = is_nonlinearity(*c.layer);
        hooks.push_back(c.layer->register_forward_hook([&c, input](const ForwardHookContext<float>& context) {
            const auto& tensor = input ? context.input.value() : context.output.value();
            c.step = context.step;
            c.values.insert(c.values.end(), tensor.begin(), tensor.end());
        }));
    }
    {
        ModeGuard<float> mode(model);
        model.eval();
        NoGrad no_grad;
        const std::size_t total = images.shape()[0];
        for (std::size_t start = 0; start < total; start += batch_images) {
            const xt::xarray<float> batch = xt::view(images, xt::range(start, std::min(start + batch_images, total)));
            (void)model(Var<float>(batch));
        }
    }
    std::vector<ActivationStatistics> out;
    for (std::size_t k = 0; k < layers.size(); ++k) {
        // A layer its container calls past its hooks (child->forward(x)) would give a row of NaN.
        if (collected[k].values.empty()) {
            throw std::runtime_error("--record-activations: layer '" + layers[k] + "' saw no input in a forward over " +
                                     std::to_string(images.shape()[0]) + " images (does its container call it through operator()?)");
        }
        out.push_back(statistics_of(layers[k], collected[k]));
    }
    return out;
}

}  // namespace xgrad
