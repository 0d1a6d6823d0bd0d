// The demonstration run: a 2-64-64-K ReLU MLP trained with plain SGD on the spirals task, written
// directly against the autodiff API (Vars, fused elementwise expressions, matmul, log_softmax).
#pragma once

#include <cstddef>
#include <cstdint>
#include <ostream>

namespace xgrad {

struct MlpDemoConfig {
    std::size_t steps = 2000;
    std::size_t batch = 128;
    float lr = 0.2f;
    std::uint64_t seed = 0;
    std::size_t report_every = 200;
};

// Trains and prints one line per report (step, loss, accuracy); returns the final accuracy on
// the whole training set.
double run_mlp_demo(const MlpDemoConfig& config, std::ostream& out);

}  // namespace xgrad
