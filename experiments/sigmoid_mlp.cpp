#include "experiments/sigmoid_mlp.hpp"

#include <stdexcept>

namespace xgrad {

namespace {
constexpr std::size_t image_features = 28 * 28, classes = 10;
}  // namespace

nlohmann::json sigmoid_mlp_spec(std::size_t depth, std::size_t width) {
    if (depth == 0 || width == 0) {
        throw std::invalid_argument("a sigmoid MLP needs at least one hidden layer of at least one unit (depth " +
                                    std::to_string(depth) + ", width " + std::to_string(width) + " given)");
    }
    nlohmann::json layers = nlohmann::json::array();
    for (std::size_t layer = 1; layer <= depth; ++layer) {
        const std::string i = std::to_string(layer);
        layers.push_back({{"type", "linear"}, {"name", "fc" + i}, {"out_features", width}, {"bias", "auto"}});
        layers.push_back({{"type", "norm"}, {"name", "bn" + i}});
        layers.push_back({{"type", "sigmoid"}, {"name", "sigmoid" + i}});
    }
    layers.push_back({{"type", "linear"}, {"name", "fc" + std::to_string(depth + 1)}, {"out_features", classes}});
    const std::string shape = std::to_string(image_features) + "-" + std::to_string(width) + "x" + std::to_string(depth) +
                              "-" + std::to_string(classes);
    return {{"description", "a sigmoid MLP, " + shape + ", the run's --norm before each nonlinearity"},
            {"input", {image_features}},
            {"layers", layers}};
}

ModelConfig sigmoid_mlp_model(std::size_t depth, std::size_t width, Norm norm) {
    ModelConfig model;
    model.name = spec_model_name;
    model.spec = sigmoid_mlp_spec(depth, width);
    model.spec_source = "sigmoid-mlp(depth " + std::to_string(depth) + ", width " + std::to_string(width) + ")";
    model.norm = norm;
    return model;
}

std::vector<std::string> sigmoid_layer_names(std::size_t depth) {
    std::vector<std::string> names;
    for (std::size_t layer = 1; layer <= depth; ++layer) names.push_back("sigmoid" + std::to_string(layer));
    return names;
}

}  // namespace xgrad
