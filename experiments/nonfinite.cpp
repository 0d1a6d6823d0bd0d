#include "experiments/nonfinite.hpp"

#include <cmath>
#include <utility>
#include <vector>

#include "autodiff/grad_mode.hpp"

namespace xgrad {

namespace {

// "holds nan at element 3 of 100" for the first non-finite element of `values`, if any.
std::optional<std::string> first_nonfinite_element(const xt::xarray<float>& values) {
    for (std::size_t i = 0; i < values.size(); ++i) {
        const float v = values.data()[i];
        if (std::isfinite(v)) continue;
        const std::string value = std::isnan(v) ? "nan" : v > 0 ? "inf" : "-inf";
        return "holds " + value + " at element " + std::to_string(i) + " of " + std::to_string(values.size());
    }
    return std::nullopt;
}

std::optional<std::string> first_nonfinite_in_layer(const Module<float>& layer) {
    for (const auto& [name, parameter] : layer.named_parameters()) {
        if (auto element = first_nonfinite_element(parameter.value())) {
            return layer.where() + ": parameter " + name + " " + *element;
        }
    }
    for (const auto& [name, buffer] : layer.named_buffers()) {
        if (!buffer.tensor) continue;  // an integer counter is always finite
        if (auto element = first_nonfinite_element(*buffer.tensor)) return layer.where() + ": buffer " + name + " " + *element;
    }
    return std::nullopt;
}

}  // namespace

std::optional<std::string> first_nonfinite_state(const Module<float>& model) {
    const auto layers = model.named_children();
    if (layers.empty()) return first_nonfinite_in_layer(model);
    for (const auto& [name, layer] : layers) {
        if (auto found = first_nonfinite_in_layer(*layer)) return found;
    }
    return std::nullopt;
}

std::optional<std::string> first_nonfinite_layer(Module<float>& model, const xt::xarray<float>& images) {
    if (first_nonfinite_element(images)) return "the input";
    NoGrad no_grad;
    // Hooks fire in the order the layers compute, a nested layer's before its container's.
    std::optional<std::string> first;
    std::vector<HookHandle> hooks;
    for (const auto& [name, layer] : model.named_modules()) {
        hooks.push_back(layer->register_forward_hook([&first, &module = *layer](const ForwardHookContext<float>& c) {
            if (!first && first_nonfinite_element(c.output.value())) first = module.where();
        }));
    }
    (void)model(Var<float>(images));
    return first;
}

}  // namespace xgrad
