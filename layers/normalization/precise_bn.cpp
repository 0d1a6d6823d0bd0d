#include "layers/normalization/precise_bn.hpp"

#include <algorithm>
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "autodiff/grad_mode.hpp"
#include "autodiff/shape.hpp"
#include "layers/normalization/batch_norm.hpp"
#include "layers/init.hpp"

namespace xgrad {

namespace {

// Every module of the tree, parents before their children, a module registered in two places
// listed at each.
template <class T>
void collect_modules(Module<T>& module, std::vector<Module<T>*>& out) {
    out.push_back(&module);
    for (const auto& [name, child] : module.named_children()) collect_modules(*child, out);
}

template <class T>
BufferRef<T> buffer_of(const Module<T>& layer, std::string_view name) {
    for (const auto& [buffer_name, buffer] : layer.named_buffers()) {
        if (buffer_name == name) return buffer;
    }
    throw std::logic_error(layer.where() + ": no buffer '" + std::string(name) + "'");
}

// Module::train() sets a whole subtree, so the modes are put back in the order collect_modules
// lists the modules: each module's own call comes after every call of its ancestors.
template <class T>
class SavedModesAndGenerators {
public:
    explicit SavedModesAndGenerators(const std::vector<Module<T>*>& modules) {
        for (Module<T>* m : modules) {
            modes_.emplace_back(m, m->is_training());
            if (Rng* generator = m->generator()) generators_.emplace_back(generator, *generator);
        }
    }

    void restore() const {
        for (const auto& [module, training] : modes_) module->train(training);
        for (const auto& [generator, saved] : generators_) *generator = saved;
    }

private:
    std::vector<std::pair<Module<T>*, bool>> modes_;
    std::vector<std::pair<Rng*, Rng>> generators_;
};

// One BatchNorm layer under recalibration: its state before, to put back, and the sums of the
// statistics the batches gave it.
template <class T>
class LayerRecalibration {
public:
    explicit LayerRecalibration(BatchNorm<T>& layer)
        : layer_(&layer),
          running_mean_(buffer_of(layer, "running_mean").tensor),
          running_var_(buffer_of(layer, "running_var").tensor),
          num_batches_tracked_(buffer_of(layer, "num_batches_tracked").counter),
          mean_before_(*running_mean_),
          var_before_(*running_var_),
          batches_tracked_before_(*num_batches_tracked_),
          momentum_before_(layer.options().momentum),
          mean_sum_(xt::zeros<double>(running_mean_->shape())),
          var_sum_(xt::zeros<double>(running_var_->shape())) {}

    const BatchNorm<T>* layer() const { return layer_; }

    // running = (1 - f)·running + f·batch with the cumulative factor f = 1 / num_batches_tracked
    // and the counter from 0: the batch's first forward leaves exactly its statistics (from finite
    // starting values: 0·inf would be NaN), and a layer that normalizes a batch in several chunks
    // (Ghost BN) the average of theirs. The counter tells whether the forward reached the layer.
    void begin_batch() {
        layer_->set_momentum(std::nullopt);
        running_mean_->fill(T(0));
        running_var_->fill(T(1));
        *num_batches_tracked_ = 0;
    }

    void end_batch() {
        if (*num_batches_tracked_ == 0) return;
        mean_sum_ += xt::cast<double>(*running_mean_);
        var_sum_ += xt::cast<double>(*running_var_);
        ++batches_seen_;
    }

    // The averages as running statistics, the rest as it was; whether a forward reached the
    // layer (if none did, its statistics are those from before).
    bool finish() {
        if (batches_seen_ == 0) {
            undo();
            return false;
        }
        const auto seen = static_cast<double>(batches_seen_);
        *running_mean_ = xt::cast<T>(mean_sum_ / seen);
        *running_var_ = xt::cast<T>(var_sum_ / seen);
        restore_counter_and_momentum();
        return true;
    }

    void undo() {
        *running_mean_ = mean_before_;
        *running_var_ = var_before_;
        restore_counter_and_momentum();
    }

private:
    void restore_counter_and_momentum() {
        *num_batches_tracked_ = batches_tracked_before_;
        layer_->set_momentum(momentum_before_);
    }

    BatchNorm<T>* layer_;
    xt::xarray<T>* running_mean_;
    xt::xarray<T>* running_var_;
    std::int64_t* num_batches_tracked_;
    xt::xarray<T> mean_before_;
    xt::xarray<T> var_before_;
    std::int64_t batches_tracked_before_;
    std::optional<double> momentum_before_;
    xt::xarray<double> mean_sum_;
    xt::xarray<double> var_sum_;
    std::size_t batches_seen_ = 0;
};

// The BatchNorm layers with running statistics, each once.
template <class T>
std::vector<LayerRecalibration<T>> layers_to_recalibrate(const std::vector<Module<T>*>& modules) {
    std::vector<LayerRecalibration<T>> layers;
    for (Module<T>* m : modules) {
        auto* bn = dynamic_cast<BatchNorm<T>*>(m);
        if (!bn || !bn->running_mean()) continue;
        const bool listed = std::ranges::any_of(layers, [bn](const auto& l) { return l.layer() == bn; });
        if (!listed) layers.emplace_back(*bn);
    }
    return layers;
}

}  // namespace

template <class T>
std::size_t recalibrate_batch_norm(Module<T>& model, std::size_t batches, const BatchSource<T>& batch) {
    if (batches == 0) {
        throw std::invalid_argument("recalibrate_batch_norm: 0 batches given; the running statistics are averages "
                                    "over at least 1 batch");
    }
    std::vector<Module<T>*> modules;
    collect_modules(model, modules);
    std::vector<LayerRecalibration<T>> layers = layers_to_recalibrate(modules);
    if (layers.empty()) return 0;
    const SavedModesAndGenerators<T> saved(modules);

    const auto put_everything_back = [&] {
        for (auto& l : layers) l.undo();
        saved.restore();
    };
    model.train();
    std::size_t i = 0;
    try {
        NoGrad no_grad;
        for (; i < batches; ++i) {
            for (auto& l : layers) l.begin_batch();
            model(Var<T>(batch(i)));
            for (auto& l : layers) l.end_batch();
        }
    } catch (const ShapeError& e) {
        put_everything_back();
        throw ShapeError("recalibrate_batch_norm: batch " + std::to_string(i) + " (counting from 0) of " +
                         std::to_string(batches) + ": " + e.what());
    } catch (...) {
        put_everything_back();
        throw;
    }
    std::size_t recalibrated = 0;
    for (auto& l : layers) recalibrated += l.finish() ? 1 : 0;
    saved.restore();
    return recalibrated;
}

template std::size_t recalibrate_batch_norm(Module<float>&, std::size_t, const BatchSource<float>&);
template std::size_t recalibrate_batch_norm(Module<double>&, std::size_t, const BatchSource<double>&);

}  // namespace xgrad
