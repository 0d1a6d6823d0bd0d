// What train-eval measures at each evaluation of a BatchNorm model (Wu & Johnson 2021, "Rethinking
// 'Batch' in BatchNorm", §3 and §4): how far the running statistics training leaves (an
// exponential or cumulative average over batches seen by ever-changing weights) are from the
// population statistics of the current weights, and what that costs in test accuracy. A Probe
// (trainer.hpp): the model is left exactly as it was found.
#pragma once

#include <cstddef>
#include <cstdint>

#include "experiments/dataset.hpp"
#include "experiments/probes.hpp"
#include "layers/sequential.hpp"

namespace xgrad {

struct BnStatisticsProbeOptions {
    std::size_t batch = 64;  // the run's batch size: recalibration and train-mode batches have it
    std::size_t recalibration_batches = 50;
    std::uint64_t seed = 0;  // orders the training set for recalibration, the same at every evaluation
    std::size_t test_samples = 0;  // the first test images measured on; 0 for all
    bool flat_input = false;
};

// Columns, all of the weights the probe is given:
//   running_acc     test accuracy in eval mode with the running statistics training left
//   precise_acc     test accuracy in eval mode after PreciseBN (layers/normalization/precise_bn.hpp)
//                   over `recalibration_batches` training batches of `batch`
//   train_mode_acc  test accuracy in training mode: each batch of `batch` test images normalized
//                   by its own statistics (an incomplete last batch left out)
//   stats_lag       over every BatchNorm layer and channel, the mean of |running mean - population
//                   mean| / sqrt(population variance + 1e-5): the running mean's error in units of
//                   the population's deviation
// std::invalid_argument when the model has no BatchNorm layer with running statistics.
ProbeValues bn_statistics_gaps(Sequential<float>& model, const Dataset& train, const Dataset& test,
                               const BnStatisticsProbeOptions& options);

}  // namespace xgrad
