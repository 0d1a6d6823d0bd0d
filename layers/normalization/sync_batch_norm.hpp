// SyncBatchNorm (torch.nn.SyncBatchNorm): BatchNorm whose training statistics are those of the
// global batch, every rank's local batch together, over a Communicator
// (layers/distributed/communicator.hpp). Without it, data-parallel BatchNorm normalizes each rank's
// batch alone: Ghost Batch Norm with the local batch as its virtual batch.
//
// Built from the normalization stages, with collectives between them:
//   forward   local per-channel moments -> every rank's (N, C, S) and (mean, var) gathered in one
//             collective (C and S must agree; N may differ, and may be 0: such a rank still joins
//             every collective) and combined in rank order (Chan et al.'s pairwise update, any
//             counts) -> fold and apply on the local batch; the running statistics move by
//             the global batch's moments, with torch's unbiased rule over the global count.
//   backward  local Σg and Σg·(x - mean) per channel -> this rank's dγ and dβ from them (a data-
//             parallel trainer sums the ranks' parameter gradients: layers/distributed/data_parallel.hpp)
//             -> the sums all-reduced in rank order -> dx from the global sums over the global count.
// So W ranks with local batches B_r give each rank the outputs, dx and running statistics one
// process gives for the concatenated batch, and Σ over ranks of dγ, dβ are its dγ, dβ (float
// rounding apart). In eval, or when the communicator has one rank, it is BatchNorm. The same
// state_dict as BatchNorm1d/2d. Every rank must make the same calls in the same order, backward
// included: a rank whose loss does not reach the layer (no samples, say) must still run a backward
// through it, from a zero output gradient, or the others wait for it in the all-reduce.
#pragma once

#include <cstddef>
#include <initializer_list>
#include <memory>
#include <string>

#include "layers/distributed/communicator.hpp"
#include "layers/normalization/batch_norm.hpp"

namespace xgrad {

template <class T>
class SyncBatchNorm : public BatchNorm<T> {
public:
    // Training: a ShapeError naming the layer, on every rank alike, when some rank's input does not
    // fit the layer, when ranks disagree on the spatial size, or when the global batch has a single
    // value per channel. Every rank's layer must have the same num_features (MPI refuses the
    // collective otherwise, ending the job).
    Var<T> forward(const Var<T>& x) override;
    std::shared_ptr<Communicator> communicator() const { return communicator_; }

protected:
    SyncBatchNorm(const char* kind, std::initializer_list<std::size_t> ranks, const char* layout,
                  std::size_t num_features, BatchNormOptions options, bool relu,
                  std::shared_ptr<Communicator> communicator);

private:
    std::shared_ptr<Communicator> communicator_;
};

// Over (N, C) or (N, C, L), statistics per channel over every rank's batch.
template <class T>
class SyncBatchNorm1d final : public SyncBatchNorm<T> {
public:
    explicit SyncBatchNorm1d(std::size_t num_features, BatchNormOptions options = {},
                             std::shared_ptr<Communicator> communicator = world())
        : SyncBatchNorm<T>("SyncBatchNorm1d", {2, 3}, "(N, C) or (N, C, L)", num_features, options, false,
                           std::move(communicator)) {}
};

// Over (N, C, H, W).
template <class T>
class SyncBatchNorm2d final : public SyncBatchNorm<T> {
public:
    explicit SyncBatchNorm2d(std::size_t num_features, BatchNormOptions options = {},
                             std::shared_ptr<Communicator> communicator = world())
        : SyncBatchNorm<T>("SyncBatchNorm2d", {4}, "(N, C, H, W)", num_features, options, false,
                           std::move(communicator)) {}
};

// SyncBatchNorm1d then ReLU in one node (BatchNormReLU1d's counterpart), the same state.
template <class T>
class SyncBatchNormReLU1d final : public SyncBatchNorm<T> {
public:
    explicit SyncBatchNormReLU1d(std::size_t num_features, BatchNormOptions options = {},
                                 std::shared_ptr<Communicator> communicator = world())
        : SyncBatchNorm<T>("SyncBatchNormReLU1d", {2, 3}, "(N, C) or (N, C, L)", num_features, options, true,
                           std::move(communicator)) {}
};

// SyncBatchNorm2d then ReLU in one node.
template <class T>
class SyncBatchNormReLU2d final : public SyncBatchNorm<T> {
public:
    explicit SyncBatchNormReLU2d(std::size_t num_features, BatchNormOptions options = {},
                                 std::shared_ptr<Communicator> communicator = world())
        : SyncBatchNorm<T>("SyncBatchNormReLU2d", {4}, "(N, C, H, W)", num_features, options, true,
                           std::move(communicator)) {}
};

extern template class SyncBatchNorm<float>;
extern template class SyncBatchNorm<double>;

}  // namespace xgrad
