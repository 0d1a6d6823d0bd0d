#include "experiments/model_config.hpp"

#include <cstdint>
#include <stdexcept>
#include <type_traits>
#include <utility>

namespace xgrad {

const std::vector<std::string>& norm_names() {
    static const std::vector<std::string> names{"batch", "batch-renorm", "ghost", "group",
                                                "layer", "instance",     "frn",   "none"};
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

BatchRenormOptions RenormSettings::options() const {
    RenormSchedule schedule;
    schedule.relax_from = warmup;
    schedule.rmax_final = rmax;
    schedule.rmax_final_at = rmax_at;
    schedule.dmax_final = dmax;
    schedule.dmax_final_at = dmax_at;
    return {.momentum = momentum, .schedule = schedule};
}

namespace {

void check_renorm(const RenormSettings& r) {
    model_range::renorm_rmax.check("--renorm-rmax", r.rmax);
    model_range::renorm_dmax.check("--renorm-dmax", r.dmax);
    if (r.warmup < 0) reject_flag("--renorm-warmup", "a whole number of steps >= 0", std::to_string(r.warmup));
    const std::string after_warmup = "a step >= --renorm-warmup (" + std::to_string(r.warmup) + ")";
    if (r.rmax_at < r.warmup) reject_flag("--renorm-rmax-at", after_warmup, std::to_string(r.rmax_at));
    if (r.dmax_at < r.warmup) reject_flag("--renorm-dmax-at", after_warmup, std::to_string(r.dmax_at));
    model_range::renorm_momentum.check("--renorm-momentum", r.momentum);
}

}  // namespace

void check_norm_settings(const ModelConfig& c) {
    if (c.sync_bn && c.norm != Norm::batch) {
        throw std::invalid_argument("--sync-bn synchronizes BatchNorm's statistics over the ranks, and --norm " +
                                    norm_name(c.norm) + " has no BatchNorm layer");
    }
    switch (c.norm) {
        case Norm::batch:
            if (c.bn_momentum) model_range::bn_momentum.check("--bn-momentum", *c.bn_momentum);
            return;
        case Norm::group: model_range::norm_groups.check("--norm-groups", c.norm_groups); return;
        case Norm::ghost:
            // Both models have a norm layer after a Linear, where a virtual batch of one sample
            // would have one value per feature.
            if (c.ghost_batch == 0) {
                throw std::invalid_argument("--norm ghost needs --ghost-batch B, the samples of each virtual batch (>= 2)");
            }
            model_range::ghost_batch.check("--ghost-batch", c.ghost_batch);
            return;
        case Norm::batch_renorm: check_renorm(c.renorm); return;
        default: return;
    }
}

void check_model_config(const ModelConfig& c) {
    if (c.init_sigma) model_range::init_sigma.check("--init-sigma", *c.init_sigma);
    model_range::dropout.check("--dropout", c.dropout);
    check_norm_settings(c);
}

nlohmann::json to_json(const ModelConfig& c) {
    nlohmann::json json = {
        {"model", c.name},
        {"norm", norm_name(c.norm)},
        {"init_sigma", c.init_sigma ? nlohmann::json(*c.init_sigma) : nlohmann::json(nullptr)},
        {"dropout", c.dropout},
    };
    if (c.norm == Norm::group) json["norm_groups"] = c.norm_groups;
    if (c.norm == Norm::ghost) json["ghost_batch"] = c.ghost_batch;
    // Only when not torch's default, so that runs begun before the flag existed still match.
    if (c.norm == Norm::batch && c.bn_momentum != BatchNormOptions{}.momentum) {
        json["bn_momentum"] = c.bn_momentum ? nlohmann::json(*c.bn_momentum) : nlohmann::json(cumulative_momentum);
    }
    if (c.norm == Norm::batch_renorm) {
        json.update({{"renorm_rmax", c.renorm.rmax},
                     {"renorm_dmax", c.renorm.dmax},
                     {"renorm_warmup", c.renorm.warmup},
                     {"renorm_rmax_at", c.renorm.rmax_at},
                     {"renorm_dmax_at", c.renorm.dmax_at},
                     {"renorm_momentum", c.renorm.momentum}});
    }
    if (c.noisy_bn) json["noisy_bn"] = true;
    if (c.sync_bn) json["sync_bn"] = true;
    if (c.name == spec_model_name) json["model_spec"] = c.spec;
    return json;
}

namespace {

// Whether a whole-number field can take `value` as it is: nlohmann's get<> casts a fraction (undefined
// behaviour beyond the integer's range: 2.5e21 for a long) and wraps an integer that does not fit.
template <class Value>
bool fits(const nlohmann::json& value) {
    if constexpr (std::is_integral_v<Value> && !std::is_same_v<Value, bool>) {
        if (value.is_number_unsigned()) return std::in_range<Value>(value.get<std::uint64_t>());
        if (value.is_number_integer()) return std::in_range<Value>(value.get<std::int64_t>());
        return !value.is_number();  // the other types: get<> throws, named below
    }
    return true;
}

template <class Value>
void read(const nlohmann::json& json, const char* key, Value& target) {
    if (!json.contains(key)) throw std::invalid_argument(std::string("no key '") + key + "'");
    const auto not_its_type = [&] {
        return std::invalid_argument(std::string("'") + key + "' is " + json.at(key).dump() + ", not a value of its type");
    };
    if (!fits<Value>(json.at(key))) throw not_its_type();
    try {
        target = json.at(key).get<Value>();
    } catch (const nlohmann::json::exception&) {
        throw not_its_type();
    }
}

}  // namespace

ModelConfig model_config_from_json(const nlohmann::json& json) {
    ModelConfig c;
    std::string norm;
    read(json, "model", c.name);
    if (c.name == spec_model_name) {
        read(json, "model_spec", c.spec);
        if (!c.spec.is_object()) throw std::invalid_argument("'model_spec' is " + c.spec.dump() + ", not a JSON object");
        c.spec_source = "model_spec";
    }
    read(json, "norm", norm);
    c.norm = parse_norm(norm);
    if (!json.contains("init_sigma")) throw std::invalid_argument("no key 'init_sigma'");
    if (!json.at("init_sigma").is_null()) {  // null: torch's default init
        double sigma = 0;
        read(json, "init_sigma", sigma);
        c.init_sigma = sigma;
    }
    read(json, "dropout", c.dropout);
    if (json.contains("noisy_bn")) read(json, "noisy_bn", c.noisy_bn);
    if (json.contains("sync_bn")) read(json, "sync_bn", c.sync_bn);
    if (c.norm == Norm::group) read(json, "norm_groups", c.norm_groups);
    if (c.norm == Norm::ghost) read(json, "ghost_batch", c.ghost_batch);
    if (c.norm == Norm::batch && json.contains("bn_momentum")) {
        const nlohmann::json& momentum = json.at("bn_momentum");
        if (momentum == cumulative_momentum) {
            c.bn_momentum = std::nullopt;
        } else {
            double m = 0;
            read(json, "bn_momentum", m);
            c.bn_momentum = m;
        }
    }
    if (c.norm == Norm::batch_renorm) {
        read(json, "renorm_rmax", c.renorm.rmax);
        read(json, "renorm_dmax", c.renorm.dmax);
        read(json, "renorm_warmup", c.renorm.warmup);
        read(json, "renorm_rmax_at", c.renorm.rmax_at);
        read(json, "renorm_dmax_at", c.renorm.dmax_at);
        read(json, "renorm_momentum", c.renorm.momentum);
    }
    return c;
}

}  // namespace xgrad
