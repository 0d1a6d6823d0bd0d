// The data sets a run trains and is evaluated on, as its TrainConfig names them: the training set
// (its first train_subset images when that is set) and the whole test set; the synthetic ones
// drawn from the run's seed. For the trainer and for the probes that need the same images.
#pragma once

#include "experiments/dataset.hpp"
#include "experiments/train_config.hpp"

namespace xgrad {

// std::invalid_argument naming --train-subset when it asks for more images than the set has.
Dataset training_set_of(const TrainConfig& config);
Dataset test_set_of(const TrainConfig& config);

}  // namespace xgrad
