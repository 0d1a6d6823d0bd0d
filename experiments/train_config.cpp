#include "experiments/train_config.hpp"

#include <algorithm>
#include <stdexcept>

#include "layers/conv_backend.hpp"
#include "layers/python_repr.hpp"

namespace xgrad {

nlohmann::json to_json(const TrainConfig& c) {
    nlohmann::json json = to_json(c.model);
    json.update({
        {"dataset", c.dataset},
        {"optimizer", c.optimizer},
        {"lr", c.lr},
        {"momentum", c.momentum},
        {"batch", c.batch},
        {"epochs", c.epochs},
        {"steps", c.steps},
        {"eval_every", c.eval_every},
        {"eval_samples", c.eval_samples},
        {"synthetic_size", c.synthetic_size},
        {"divergence_loss", c.divergence_loss},
        {"seed", c.seed},
        {"threads", c.threads},
        {"record_activations", c.record_activations},
    });
    // Only when set, so that runs begun before the flag existed still match.
    if (c.train_subset != 0) json["train_subset"] = c.train_subset;
    if (c.conv_backend != conv_backend_name(ConvBackend::own)) json["conv_backend"] = c.conv_backend;
    return json;
}

void check_train_config(const TrainConfig& c) {
    check_model_config(c.model);
    train_range::lr.check("--lr", c.lr);
    train_range::momentum.check("--momentum", c.momentum);
    if (c.momentum != 0.0 && c.optimizer != "sgd") {
        throw std::invalid_argument("--momentum " + python_float(c.momentum) + " applies to --optimizer sgd only, not to --optimizer " +
                                    c.optimizer);
    }
    train_range::batch.check("--batch", c.batch);
    train_range::epochs.check("--epochs", c.epochs);
    if (c.steps != 0) train_range::steps.check("--steps", c.steps);  // 0: the run's length is --epochs
    train_range::eval_every.check("--eval-every", c.eval_every);
    train_range::eval_samples.check("--eval-samples", c.eval_samples);
    train_range::synthetic_size.check("--synthetic-size", c.synthetic_size);
    train_range::train_subset.check("--train-subset", c.train_subset);
    train_range::seed.check("--seed", c.seed);
    train_range::threads.check("--threads", c.threads);
    const auto backend = parse_conv_backend(c.conv_backend);
    if (!backend) throw std::invalid_argument("--conv-backend: expected own or onednn; got " + c.conv_backend);
    if (*backend == ConvBackend::onednn && !onednn_convolution_available()) {
        throw std::invalid_argument("--conv-backend onednn: this build has no oneDNN (meson option onednn)");
    }
    for (auto name = c.record_activations.begin(); name != c.record_activations.end(); ++name) {
        if (name->empty()) throw std::invalid_argument("--record-activations: an empty layer name");
        if (std::find(c.record_activations.begin(), name, *name) != name) {
            throw std::invalid_argument("--record-activations: layer '" + *name + "' is named twice");
        }
    }
}

nlohmann::json with_current_keys(nlohmann::json recorded) {
    if (recorded.contains("bn") && recorded.at("bn").is_boolean() && !recorded.contains("norm")) {
        recorded["norm"] = norm_name(norm_from_bn(recorded.at("bn").get<bool>()));
        recorded.erase("bn");
    }
    return recorded;
}

namespace {

// A key one side lacks matches `false` or an empty list on the other: a flag added later is off in
// older runs.
bool same_value(const nlohmann::json& config, const std::string& key, const nlohmann::json& value) {
    if (!config.contains(key)) return value == false || value == nlohmann::json::array();
    return config.at(key) == value;
}

}  // namespace

std::optional<std::string> first_difference(const nlohmann::json& a, const nlohmann::json& b) {
    // The own convolutions' bits do not depend on the thread count; oneDNN's do.
    // Compared, not read as a string: a recorded conv_backend of another type is a difference.
    const auto on_onednn = [](const nlohmann::json& config) {
        return config.contains("conv_backend") && config.at("conv_backend") == conv_backend_name(ConvBackend::onednn);
    };
    const bool threads_matter = on_onednn(a) || on_onednn(b);
    for (const auto& [key, value] : a.items()) {
        if ((key != "threads" || threads_matter) && !same_value(b, key, value)) return key;
    }
    for (const auto& [key, value] : b.items()) {
        if ((key != "threads" || threads_matter) && !same_value(a, key, value)) return key;
    }
    return std::nullopt;
}

}  // namespace xgrad
