#include "experiments/train_config.hpp"

namespace xgrad {

nlohmann::json to_json(const TrainConfig& c) {
    nlohmann::json json = {
        {"model", c.model},
        {"dataset", c.dataset},
        {"bn", c.batch_norm},
        {"init_sigma", c.init_sigma ? nlohmann::json(*c.init_sigma) : nlohmann::json(nullptr)},
        {"dropout", c.dropout},
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
    };
    // Only when on, so that runs begun before the option existed still resume.
    if (c.noisy_bn) json["noisy_bn"] = true;
    return json;
}

namespace {

// A key one side lacks matches `false` on the other: a flag added later is off in older runs.
bool same_value(const nlohmann::json& config, const std::string& key, const nlohmann::json& value) {
    if (!config.contains(key)) return value == false;
    return config.at(key) == value;
}

}  // namespace

std::optional<std::string> first_difference(const nlohmann::json& a, const nlohmann::json& b) {
    for (const auto& [key, value] : a.items()) {
        if (key != "threads" && !same_value(b, key, value)) return key;
    }
    for (const auto& [key, value] : b.items()) {
        if (key != "threads" && !same_value(a, key, value)) return key;
    }
    return std::nullopt;
}

}  // namespace xgrad
