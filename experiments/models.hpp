// The models the experiments train, by name:
//   seed-cnn           the seed document's CNN with fc1 corrected to 64*7*7 inputs
//   seed-cnn-verbatim  the seed's CNN exactly as written: fc1 = Linear(64*28*28, 128), which its
//                      first forward rejects with an error naming fc1, 50176 and 3136
//   paper-mlp          the MLP of Ioffe & Szegedy's MNIST experiment: 784-100-100-100-10, sigmoid,
//                      BN before each hidden nonlinearity (no bias where BN follows)
// With noisy_bn, a DistributionNoise layer follows every BN layer (noise1, noise2, ...). In the
// seed CNN, a BN layer and the ReLU after it are one BatchNormReLU layer (named as the BN layer)
// unless a noise layer comes between them.
// Parameter and buffer names are those of the matching PyTorch module's state_dict.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "layers/init.hpp"
#include "layers/sequential.hpp"

namespace xgrad {

struct ModelOptions {
    std::string name = "seed-cnn";
    bool batch_norm = true;
    // Weights from N(0, sigma) instead of torch's default init (biases then start at 0).
    std::optional<double> init_sigma;
    // Dropout probability after each hidden nonlinearity; 0 adds no Dropout layer.
    double dropout = 0.0;
    // A DistributionNoise layer after each BN (Santurkar et al.'s "noisy BN"); needs batch_norm.
    bool noisy_bn = false;
};

const std::vector<std::string>& model_names();

// Whether the model takes images flattened to (N, 784) rather than (N, 1, 28, 28).
bool model_takes_flat_input(const std::string& name);

// Builds the model with every random draw from `rng`. An unknown name is a std::invalid_argument
// listing the known ones.
std::shared_ptr<Sequential<float>> make_model(const ModelOptions& options, Rng& rng);

}  // namespace xgrad
