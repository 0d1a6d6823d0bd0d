// The optimizer the training-step benchmarks give each model, as its experiments train it: Adam
// (lr 1e-3) for seed-cnn, SGD (lr 0.1) for paper-mlp.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "layers/adam.hpp"
#include "layers/sgd.hpp"

namespace xgrad_bench {

inline std::unique_ptr<xgrad::Optimizer<float>> step_optimizer(const std::string& model,
                                                               std::vector<xgrad::Var<float>> parameters) {
    if (model == "paper-mlp") return std::make_unique<xgrad::SGD<float>>(std::move(parameters), xgrad::SgdOptions{.lr = 0.1});
    return std::make_unique<xgrad::Adam<float>>(std::move(parameters), xgrad::AdamOptions{.lr = 1e-3});
}

}  // namespace xgrad_bench
