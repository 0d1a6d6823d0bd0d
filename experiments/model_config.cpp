#include "experiments/model_config.hpp"

#include <stdexcept>

namespace xgrad {

const std::vector<std::string>& norm_names() {
    static const std::vector<std::string> names{"batch", "none"};
    return names;
}

const std::string& norm_name(Norm norm) { return norm_names().at(static_cast<std::size_t>(norm)); }

Norm parse_norm(const std::string& name) {
    const auto& names = norm_names();
    for (std::size_t i = 0; i < names.size(); ++i) {
        if (names[i] == name) return static_cast<Norm>(i);
    }
    std::string known;
    for (const auto& n : names) known += (known.empty() ? "" : ", ") + n;
    throw std::invalid_argument("unknown normalization '" + name + "' (known: " + known + ")");
}

Norm norm_from_bn(bool on) { return on ? Norm::batch : Norm::none; }

nlohmann::json to_json(const ModelConfig& c) {
    nlohmann::json json = {
        {"model", c.name},
        {"norm", norm_name(c.norm)},
        {"init_sigma", c.init_sigma ? nlohmann::json(*c.init_sigma) : nlohmann::json(nullptr)},
        {"dropout", c.dropout},
    };
    if (c.noisy_bn) json["noisy_bn"] = true;
    return json;
}

}  // namespace xgrad
