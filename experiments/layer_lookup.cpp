#include "experiments/layer_lookup.hpp"

#include <stdexcept>

namespace xgrad {

Module<float>& layer_at(const Module<float>& model, const std::string& path, const std::string& who) {
    std::string known;
    for (const auto& [name, layer] : model.named_modules()) {
        if (name == path) return *layer;
        known += (known.empty() ? "" : ", ") + name;
    }
    throw std::invalid_argument(who + ": the model has no layer '" + path + "'; its layers are " +
                                (known.empty() ? "none" : known));
}

}  // namespace xgrad
