// The description of a run's model: which network, its normalization, and what the drivers vary
// around it (initialization, dropout, noise after the norm layers). make_model builds from it,
// TrainConfig holds it, and config.json records its fields under the keys of to_json below.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace xgrad {

// The normalization layer after each hidden Linear or Conv2d. A new one is a value here, its name
// in norm_names(), and its case in make_norm_layer (experiments/norm_activation.cpp).
enum class Norm { batch, none };

// Every Norm's name, in the enum's order: what `--norm` takes and config.json records.
const std::vector<std::string>& norm_names();
const std::string& norm_name(Norm norm);
// The Norm named `name`; std::invalid_argument listing the known names otherwise.
Norm parse_norm(const std::string& name);
// The `--bn on|off` spelling, and the BN-on/off arms of the drivers: batch when on, none when off.
Norm norm_from_bn(bool on);

struct ModelConfig {
    std::string name = "seed-cnn";  // experiments/models.hpp lists the models
    Norm norm = Norm::batch;
    // Weights from N(0, sigma) instead of torch's default init (biases then start at 0).
    std::optional<double> init_sigma;
    // Dropout probability after each hidden nonlinearity; 0 adds no Dropout layer.
    double dropout = 0.0;
    // A DistributionNoise layer after each norm layer (Santurkar et al.'s "noisy BN"); needs a norm.
    bool noisy_bn = false;
};

// The keys config.json records: model, norm, init_sigma, dropout, and noisy_bn only when on (runs
// begun before that flag existed lack it).
nlohmann::json to_json(const ModelConfig& config);

}  // namespace xgrad
