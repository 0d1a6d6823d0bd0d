#include "experiments/bn_statistics_probe.hpp"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "autodiff/grad_mode.hpp"
#include "experiments/batch_loader.hpp"
#include "experiments/evaluation.hpp"
#include "layers/normalization/precise_bn.hpp"

namespace xgrad {

namespace {

// Every buffer of the model, to put back after forwards in training mode have moved them.
class SavedBuffers {
public:
    explicit SavedBuffers(const Module<float>& model) {
        for (auto& [name, buffer] : model.named_buffers()) {
            if (buffer.tensor) tensors_.emplace_back(buffer.tensor, *buffer.tensor);
            if (buffer.counter) counters_.emplace_back(buffer.counter, *buffer.counter);
        }
    }
    SavedBuffers(const SavedBuffers&) = delete;
    SavedBuffers& operator=(const SavedBuffers&) = delete;
    ~SavedBuffers() {
        for (auto& [tensor, saved] : tensors_) *tensor = std::move(saved);
        for (auto& [counter, saved] : counters_) *counter = saved;
    }

private:
    std::vector<std::pair<xt::xarray<float>*, xt::xarray<float>>> tensors_;
    std::vector<std::pair<std::int64_t*, std::int64_t>> counters_;
};

bool ends_with(const std::string& name, const std::string& suffix) {
    return name.size() >= suffix.size() && name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// The running means and variances of the model's BatchNorm layers, in the model's order.
std::vector<std::pair<xt::xarray<float>, xt::xarray<float>>> running_statistics(const Module<float>& model) {
    std::vector<std::pair<xt::xarray<float>, xt::xarray<float>>> out;
    for (const auto& [name, buffer] : model.named_buffers()) {
        if (ends_with(name, "running_mean")) out.push_back({*buffer.tensor, {}});
        if (ends_with(name, "running_var")) out.back().second = *buffer.tensor;
    }
    return out;
}

double mean_standardized_error(const std::vector<std::pair<xt::xarray<float>, xt::xarray<float>>>& running,
                               const std::vector<std::pair<xt::xarray<float>, xt::xarray<float>>>& population) {
    double sum = 0;
    std::size_t channels = 0;
    for (std::size_t layer = 0; layer < running.size(); ++layer) {
        const auto& [mean, var] = population[layer];
        for (std::size_t c = 0; c < mean.size(); ++c) {
            sum += std::abs(static_cast<double>(running[layer].first(c)) - mean(c)) / std::sqrt(static_cast<double>(var(c)) + 1e-5);
            ++channels;
        }
    }
    return sum / static_cast<double>(channels);
}

// The whole batches of `options.batch` among the test images measured on; std::invalid_argument for none.
std::size_t test_batches(const Dataset& test, const BnStatisticsProbeOptions& options) {
    const std::size_t samples = options.test_samples == 0 ? test.labels.size() : std::min(options.test_samples, test.labels.size());
    if (samples < options.batch) {
        throw std::invalid_argument("bn_statistics_gaps: " + std::to_string(samples) + " test images make no batch of " +
                                    std::to_string(options.batch));
    }
    return samples / options.batch;
}

// Test accuracy with each of `batches` batches of `batch` normalized by its own statistics (the
// model in training mode).
double train_mode_accuracy(Sequential<float>& model, const Dataset& test, std::size_t batches,
                           const BnStatisticsProbeOptions& options) {
    NoGrad no_grad;
    BatchLoader loader(test, {.batch_size = options.batch, .shuffle = false, .flatten = options.flat_input});
    std::size_t right = 0;
    for (std::size_t b = 0; b < batches; ++b) {
        const Batch batch = loader.next();
        right += count_correct(model(Var<float>(batch.images)).value(), batch.labels);
    }
    return static_cast<double>(right) / static_cast<double>(batches * options.batch);
}

}  // namespace

ProbeValues bn_statistics_gaps(Sequential<float>& model, const Dataset& train, const Dataset& test,
                               const BnStatisticsProbeOptions& options) {
    const bool was_training = model.is_training();
    const auto running = running_statistics(model);
    if (running.empty()) throw std::invalid_argument("bn_statistics_gaps: the model has no BatchNorm layer with running statistics");
    const std::size_t batches = test_batches(test, options);
    SavedBuffers saved(model);
    // Eval mode with the running statistics, here rather than the trainer's evaluation after the
    // step, so that every column is of the same weights.
    const Evaluation running_eval = evaluate(model, test, options.flat_input, options.test_samples);

    model.train();
    const double train_mode_acc = train_mode_accuracy(model, test, batches, options);

    BatchLoader loader(train, {.batch_size = options.batch, .seed = options.seed, .drop_last = true, .flatten = options.flat_input});
    recalibrate_batch_norm<float>(model, options.recalibration_batches, [&loader](std::size_t) { return loader.next().images; });
    const double stats_lag = mean_standardized_error(running, running_statistics(model));
    const Evaluation precise = evaluate(model, test, options.flat_input, options.test_samples);
    model.train(was_training);
    return {{"running_acc", running_eval.accuracy},
            {"precise_acc", precise.accuracy},
            {"train_mode_acc", train_mode_acc},
            {"stats_lag", stats_lag}};
}

}  // namespace xgrad
