#include "experiments/train_config.hpp"

namespace xgrad {

nlohmann::json to_json(const TrainConfig& c) {
    return {
        {"model", c.model},
        {"dataset", c.dataset},
        {"bn", c.batch_norm},
        {"init_sigma", c.init_sigma ? nlohmann::json(*c.init_sigma) : nlohmann::json(nullptr)},
        {"dropout", c.dropout},
        {"noisy_bn", c.noisy_bn},
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
}

std::optional<std::string> first_difference(const nlohmann::json& a, const nlohmann::json& b) {
    for (const auto& [key, value] : a.items()) {
        if (key == "threads") continue;
        if (!b.contains(key) || b.at(key) != value) return key;
    }
    for (const auto& [key, value] : b.items()) {
        if (key != "threads" && !a.contains(key)) return key;
    }
    return std::nullopt;
}

}  // namespace xgrad
