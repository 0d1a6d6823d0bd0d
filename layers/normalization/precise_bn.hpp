// PreciseBN (Wu & Johnson 2021, "Rethinking 'Batch' in BatchNorm"; fvcore's update_bn_stats):
// the running statistics a model ends training with are an exponential average over batches
// seen by ever-changing weights; recalibration replaces them by population statistics of the
// final weights, the average over given batches of each batch's mean and unbiased variance.
#pragma once

#include <cstddef>
#include <functional>

#include <xtensor/xarray.hpp>

#include "layers/module.hpp"

namespace xgrad {

// The model's input for recalibration pass `index` (0, 1, ...), asked for once per pass, in order.
template <class T>
using BatchSource = std::function<xt::xarray<T>(std::size_t index)>;

// Runs `batches` forwards of the whole model in training mode without recording a graph, then
// sets each BatchNorm layer's running_mean to the average of the batch means it saw and its
// running_var to the average of the unbiased batch variances (fvcore's rule; averaged in
// double). Every BatchNorm<T> at any depth counts (BatchNorm1d/2d, BatchNormReLU1d/2d), except
// layers without running statistics; a layer no forward reached keeps its statistics.
// Random layers such as Dropout are active during the passes, as in training.
//
// Only the running statistics change: parameters, num_batches_tracked, momentum, every
// module's train/eval mode and the random layers' generators are as they were before. When
// `batch` or a forward throws, the model is left entirely as it was and the exception goes on;
// a ShapeError gains which batch it was: "recalibrate_batch_norm: batch 2 (counting from 0) of 3:
// fc1 (Linear(in_features=27, out_features=4)): ...".
// Returns the number of layers recalibrated (reached by a forward); 0, without running a
// forward, when the model has no BatchNorm layer with running statistics. Zero batches is a
// std::invalid_argument.
template <class T>
std::size_t recalibrate_batch_norm(Module<T>& model, std::size_t batches, const BatchSource<T>& batch);

}  // namespace xgrad
