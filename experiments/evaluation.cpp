#include "experiments/evaluation.hpp"

#include <algorithm>
#include <cmath>

#include <xtensor/xview.hpp>

#include "autodiff/grad_mode.hpp"
#include "experiments/batch_loader.hpp"
#include "experiments/nonfinite.hpp"
#include "layers/cross_entropy.hpp"

namespace xgrad {

std::size_t count_correct(const xt::xarray<float>& logits, const xt::xarray<std::int64_t>& labels) {
    const std::size_t classes = logits.shape()[1];
    std::size_t right = 0;
    for (std::size_t i = 0; i < labels.size(); ++i) {
        const float* row = logits.data() + i * classes;
        const auto best = static_cast<std::int64_t>(std::max_element(row, row + classes) - row);
        right += best == labels(i);
    }
    return right;
}

Evaluation evaluate(Module<float>& model, const Dataset& data, bool flat_input, std::size_t samples) {
    const std::size_t total = samples == 0 ? data.labels.size() : std::min(samples, data.labels.size());
    const bool was_training = model.is_training();
    model.eval();
    NoGrad no_grad;
    BatchLoader loader(data, {.batch_size = 500, .shuffle = false, .flatten = flat_input});
    double loss_sum = 0;
    std::size_t right = 0;
    std::optional<std::string> nonfinite_loss;
    for (std::size_t seen = 0; seen < total;) {
        Batch batch = loader.next();
        const std::size_t take = std::min(batch.labels.size(), total - seen);
        if (take < batch.labels.size()) {
            batch.images = xt::xarray<float>(xt::view(batch.images, xt::range(0, take)));
            batch.labels = xt::xarray<std::int64_t>(xt::view(batch.labels, xt::range(0, take)));
        }
        const Var<float> images(std::move(batch.images));
        const Var<float> logits = model(images);
        const double loss = cross_entropy(logits, batch.labels).value()();
        if (!std::isfinite(loss) && !nonfinite_loss) {
            const auto layer = first_nonfinite_layer(model, images.value());
            nonfinite_loss = "the loss on test images " + std::to_string(seen) + " to " + std::to_string(seen + take - 1) +
                             " is " + std::to_string(loss) + "; " +
                             (layer ? "the first layer with a non-finite output is " + *layer : "every layer's output is finite");
        }
        loss_sum += loss * static_cast<double>(take);
        right += count_correct(logits.value(), batch.labels);
        seen += take;
    }
    model.train(was_training);
    auto nonfinite = first_nonfinite_state(model);
    if (!nonfinite) nonfinite = nonfinite_loss;
    return {loss_sum / static_cast<double>(total), static_cast<double>(right) / static_cast<double>(total), nonfinite};
}

}  // namespace xgrad
