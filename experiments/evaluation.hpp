// Loss and accuracy of a classifier over a data set, in eval mode and without recording a graph.
#pragma once

#include <cstddef>
#include <optional>
#include <string>

#include "experiments/dataset.hpp"
#include "layers/module.hpp"

namespace xgrad {

struct Evaluation {
    double loss = 0;      // mean cross-entropy
    double accuracy = 0;  // fraction of arg-max predictions equal to the label
    // Set when the figures above are not to be trusted: a parameter or buffer that is not finite
    // (experiments/nonfinite.hpp's first_nonfinite_state), else a batch whose loss is not, with
    // the first layer whose output on it is not finite.
    std::optional<std::string> nonfinite;
};

// Over the first `samples` images of `data` (all when 0), in batches; the model's train/eval
// mode is restored afterwards.
Evaluation evaluate(Module<float>& model, const Dataset& data, bool flat_input, std::size_t samples = 0);

// The number of rows of `logits` (N, K) whose arg-max equals the label.
std::size_t count_correct(const xt::xarray<float>& logits, const xt::xarray<std::int64_t>& labels);

}  // namespace xgrad
