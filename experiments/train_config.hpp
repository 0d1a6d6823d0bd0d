// Everything that defines a training run, as the `xgrad train` flags and as config.json.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

namespace xgrad {

struct TrainConfig {
    std::string model = "seed-cnn";
    std::string dataset = "fashion-mnist";
    bool batch_norm = true;
    std::optional<double> init_sigma;  // N(0, sigma) weights instead of torch's default init
    double dropout = 0.0;
    bool noisy_bn = false;  // DistributionNoise after every BN layer
    std::string optimizer = "adam";  // "sgd" or "adam"
    double lr = 1e-3;
    double momentum = 0.0;  // SGD only
    std::size_t batch = 64;
    std::size_t epochs = 1;
    std::size_t steps = 0;  // when nonzero, the run's length instead of `epochs`
    std::size_t eval_every = 100;
    std::size_t eval_samples = 0;  // test images per evaluation; 0: the whole test set
    std::size_t synthetic_size = 2000;  // training images of the "synthetic" data set
    // A loss above this (or a non-finite one) ends the run as diverged.
    double divergence_loss = 1e3;
    std::uint64_t seed = 0;
    // Speed only: no sum depends on the thread count, so the weights come out bitwise the same.
    std::size_t threads = 2;
};

nlohmann::json to_json(const TrainConfig& config);
// The name of the first field whose value differs, if any (threads ignored; a field one side lacks
// matches false on the other).
std::optional<std::string> first_difference(const nlohmann::json& a, const nlohmann::json& b);

}  // namespace xgrad
