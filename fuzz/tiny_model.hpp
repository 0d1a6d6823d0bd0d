// The model the checkpoint harness loads into, and whose checkpoint seeds its corpus: every kind
// of state a checkpoint holds (convolution and linear weights and biases, BatchNorm's running
// statistics and int64 num_batches_tracked, a Dropout's generator, Adam's per-parameter state) in
// a few kilobytes, so that a whole valid checkpoint fits the fuzzer's input size. The experiments'
// own models hold at least 400 KB of weights.
#pragma once

#include <memory>

#include "layers/sequential.hpp"

namespace xgrad_fuzz {

std::shared_ptr<xgrad::Sequential<float>> tiny_model();

}  // namespace xgrad_fuzz
