// Batch Normalization with torch.nn.BatchNorm1d/2d's semantics (DESIGN.md, "BatchNorm"): the
// graph op batch_norm (torch.nn.functional.batch_norm) over the kernels of batch_norm_kernel.hpp,
// and the modules BatchNorm1d, for (N, C) and (N, C, L), and BatchNorm2d, for (N, C, H, W); and
// BatchNormReLU1d/2d, the same followed by a ReLU in one node, which stand in for BatchNorm1d/2d
// and ReLU with the same state.
#pragma once

#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <xtensor/xarray.hpp>

#include "autodiff/var.hpp"
#include "layers/normalization/normalization_layer.hpp"
#include "layers/normalization/normalize.hpp"
#include "layers/normalization/renorm_limits.hpp"

namespace xgrad {

template <class T>
struct BatchNormArgs {
    // gamma and beta, C values each; absent for affine=false.
    std::optional<Var<T>> weight = std::nullopt;
    std::optional<Var<T>> bias = std::nullopt;
    // C values each, or both null. In training they move by `momentum`; otherwise x is
    // normalized with them.
    xt::xarray<T>* running_mean = nullptr;
    xt::xarray<T>* running_var = nullptr;
    // Normalize with the batch statistics (and move the running ones, if any).
    bool training = true;
    // The factor running statistics move by; 1 / num_batches_tracked for a cumulative average.
    double momentum = 0.1;
    double eps = 1e-5;
    // Followed by a ReLU, fused: y = max(0, BN(x)) in one node, the gradient between the two
    // never a tensor.
    bool relu = false;
    // Batch Renorm's limits (layers/normalization/batch_renorm.hpp): in training, the batch
    // statistics corrected by r and d from the running statistics before this batch moves them.
    // Needs running statistics in training; not read outside training.
    std::optional<RenormLimits> renorm = std::nullopt;
};

// torch.nn.functional.batch_norm over x of shape (N, C, ...). Gradients flow to x, weight and
// bias. `where` names the caller in error messages: a ShapeError for shapes that do not fit,
// including a channel with a single value in training (torch's "Expected more than 1 value per
// channel when training, got input size [1, 10]").
template <class T>
Var<T> batch_norm(const Var<T>& x, const BatchNormArgs<T>& args, std::string_view where = "batch_norm");

// batch_norm's checks of an input of `shape` and of args (the same errors, starting with `who`),
// and the options of its normalization (normalize.hpp): for ops that normalize as batch_norm does
// and apply otherwise.
template <class T>
NormalizeOptions<T> checked_batch_norm_options(const Shape& shape, const BatchNormArgs<T>& args, const std::string& who);

struct BatchNormOptions {
    double eps = 1e-5;
    std::optional<double> momentum = 0.1;  // nullopt: a cumulative average over num_batches_tracked
    bool affine = true;
    bool track_running_stats = true;
};

// torch's _BatchNorm: the state and forward of BatchNorm1d and BatchNorm2d. Parameters `weight`
// (1) and `bias` (0) when affine; buffers `running_mean` (0), `running_var` (1) and the counter
// `num_batches_tracked` when track_running_stats. Training normalizes with batch statistics and
// moves the running ones; eval normalizes with the running ones, or, without them, with the
// batch's (as torch does).
template <class T>
class BatchNorm : public NormalizationLayer<T> {
public:
    Var<T> forward(const Var<T>& x) override;
    // torch's repr: "BatchNorm2d(64, eps=1e-05, momentum=0.1, affine=True, track_running_stats=True)".
    std::string describe() const override;

    std::size_t num_features() const { return num_features_; }
    const BatchNormOptions& options() const { return options_; }
    // Replaces the momentum (nullopt: a cumulative average); recalibration runs its passes with 1.
    void set_momentum(std::optional<double> momentum) { options_.momentum = momentum; }

protected:
    // `kind` names the class; `ranks` are the input ranks it accepts, shown as `layout`; `relu`
    // applies a ReLU to the output, fused.
    BatchNorm(const char* kind, std::initializer_list<std::size_t> ranks, const char* layout, std::size_t num_features,
              BatchNormOptions options, bool relu = false);

    // What subclasses that normalize otherwise (Batch Renorm, Ghost Batch Norm, SyncBatchNorm) build on.
    const char* kind() const { return kind_; }
    bool fused_relu() const { return relu_; }
    // The op of forward, given the batch's arguments: batch_norm; a fused layer's own op.
    virtual Var<T> normalize(const Var<T>& x, const BatchNormArgs<T>& args) const {
        return batch_norm(x, args, this->where());
    }
    // A ShapeError naming this layer unless x has an accepted rank and num_features channels.
    void check_input(const Shape& shape) const;
    // The Batch Renorm limits of a training forward at `step` (num_batches_tracked before it);
    // none for BatchNorm itself.
    virtual std::optional<RenormLimits> renorm_limits(std::int64_t) const { return std::nullopt; }
    // The factor running statistics move by for the batch that brings num_batches_tracked to
    // `batches`: the momentum, or 1 / batches for a cumulative average.
    double running_factor(std::int64_t batches) const;

private:
    const char* kind_;
    std::vector<std::size_t> ranks_;
    const char* layout_;
    std::size_t num_features_;
    BatchNormOptions options_;
    bool relu_;
};

// Over (N, C), statistics per feature, or over (N, C, L), per channel.
template <class T>
class BatchNorm1d final : public BatchNorm<T> {
public:
    explicit BatchNorm1d(std::size_t num_features, BatchNormOptions options = {})
        : BatchNorm<T>("BatchNorm1d", {2, 3}, "(N, C) or (N, C, L)", num_features, options) {}
};

// Over (N, C, H, W), statistics per channel.
template <class T>
class BatchNorm2d final : public BatchNorm<T> {
public:
    explicit BatchNorm2d(std::size_t num_features, BatchNormOptions options = {})
        : BatchNorm<T>("BatchNorm2d", {4}, "(N, C, H, W)", num_features, options) {}
};

// BatchNorm1d then ReLU as one node: parameters, buffers and their names are BatchNorm1d's, so
// its state_dict loads into either.
template <class T>
class BatchNormReLU1d final : public BatchNorm<T> {
public:
    explicit BatchNormReLU1d(std::size_t num_features, BatchNormOptions options = {})
        : BatchNorm<T>("BatchNormReLU1d", {2, 3}, "(N, C) or (N, C, L)", num_features, options, true) {}
};

// BatchNorm2d then ReLU as one node, with BatchNorm2d's state.
template <class T>
class BatchNormReLU2d final : public BatchNorm<T> {
public:
    explicit BatchNormReLU2d(std::size_t num_features, BatchNormOptions options = {})
        : BatchNorm<T>("BatchNormReLU2d", {4}, "(N, C, H, W)", num_features, options, true) {}
};

}  // namespace xgrad
