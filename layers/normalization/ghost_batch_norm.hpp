// Ghost Batch Normalization (Hoffer, Hubara & Soudry 2017): BatchNorm over "virtual" batches. In
// training the batch is split into consecutive chunks of virtual_batch samples (torch.split: the
// last chunk is smaller when virtual_batch does not divide N), and each chunk is normalized with
// its own statistics and the shared weight and bias. The running statistics move once per chunk,
// in chunk order, as one BatchNorm called on each chunk would move them, and num_batches_tracked
// counts chunks. Eval is BatchNorm's eval with the running statistics; virtual_batch >= N is
// BatchNorm exactly.
//
// The layer is a BatchNorm<T>, with BatchNorm's parameters, buffers and names, so that its
// state_dict loads into torch's BatchNorm and recalibrate_batch_norm (precise_bn.hpp) finds it:
// a recalibration pass, which moves the statistics by the cumulative factor from a zero counter,
// leaves the average of the batch's chunks' statistics, and recalibration averages those.
#pragma once

#include <cstddef>
#include <initializer_list>
#include <optional>
#include <string>

#include "layers/normalization/batch_norm.hpp"

namespace xgrad {

struct GhostBatchNormOptions {
    double eps = 1e-5;
    std::optional<double> momentum = 0.1;  // nullopt: a cumulative average over num_batches_tracked
    bool affine = true;
};

template <class T>
class GhostBatchNorm : public BatchNorm<T> {
public:
    // Training: one graph node over all chunks. A ShapeError naming the layer and the chunk when a
    // chunk has a single value per channel.
    Var<T> forward(const Var<T>& x) override;
    // "GhostBatchNorm2d(3, virtual_batch=3, eps=1e-05, momentum=0.1, affine=True)".
    std::string describe() const override;
    std::size_t virtual_batch() const { return virtual_batch_; }

protected:
    // A std::invalid_argument naming the class for virtual_batch 0.
    GhostBatchNorm(const char* kind, std::initializer_list<std::size_t> ranks, const char* layout,
                   std::size_t num_features, std::size_t virtual_batch, const GhostBatchNormOptions& options);

private:
    std::size_t virtual_batch_;
};

// Over (N, C), statistics per feature, or over (N, C, L), per channel.
template <class T>
class GhostBatchNorm1d final : public GhostBatchNorm<T> {
public:
    GhostBatchNorm1d(std::size_t num_features, std::size_t virtual_batch, const GhostBatchNormOptions& options = {})
        : GhostBatchNorm<T>("GhostBatchNorm1d", {2, 3}, "(N, C) or (N, C, L)", num_features, virtual_batch, options) {}
};

// Over (N, C, H, W), statistics per channel.
template <class T>
class GhostBatchNorm2d final : public GhostBatchNorm<T> {
public:
    GhostBatchNorm2d(std::size_t num_features, std::size_t virtual_batch, const GhostBatchNormOptions& options = {})
        : GhostBatchNorm<T>("GhostBatchNorm2d", {4}, "(N, C, H, W)", num_features, virtual_batch, options) {}
};

extern template class GhostBatchNorm<float>;
extern template class GhostBatchNorm<double>;

}  // namespace xgrad
