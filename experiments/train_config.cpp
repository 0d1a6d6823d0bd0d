#include "experiments/train_config.hpp"

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
    });
    return json;
}

nlohmann::json with_current_keys(nlohmann::json recorded) {
    if (recorded.contains("bn") && recorded.at("bn").is_boolean() && !recorded.contains("norm")) {
        recorded["norm"] = norm_name(norm_from_bn(recorded.at("bn").get<bool>()));
        recorded.erase("bn");
    }
    return recorded;
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
