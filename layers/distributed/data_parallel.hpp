// Data-parallel training's collectives over a model (torch's DistributedDataParallel): before the
// first step every rank takes rank 0's parameters and buffers; after each backward every rank
// takes the same gradient, the sum over ranks of theirs, so that the optimizers, stepping alike,
// keep the replicas equal. Each rank's backward starts from its share of the global loss: with the
// mean loss over the global batch of N samples, rank r's own mean loss times n_r/N. The sum is then
// the gradient of the global mean loss whatever the ranks' numbers of samples, through
// SyncBatchNorm too, whose backward mixes every rank's output gradients (torch's DDP averages the
// ranks' gradients instead, which is that only for equal numbers).
//
// Gradients travel in buckets of about `bucket_bytes` (a larger parameter has one of its own), each
// parameter once even if layers share it, the parameters taken in the reverse of their
// registration order (the order backward finishes them, as DDP's reducer). Each bucket is
// all-gathered as T and summed in double in rank order, then rounded to T (as all_reduce_sum):
// every rank holds the same bits, and a run repeats them for a given number of ranks.
//
// backward() overlaps the reduction with the backward pass: a bucket's all-gather starts as soon
// as backward has finished the gradient of every parameter in it and every bucket before it has
// started (buckets start in one order on every rank, whatever the graph), and runs while backward
// goes on through the layers below; the sums are taken once backward is done. reduce_gradients()
// reduces every bucket after a backward of the caller's own. Both give the same bits. The buckets
// travel on a duplicate of the communicator given: a bucket may start during backward on one rank
// and only after it on another (a parameter frozen there, or outside its graph), and on the same
// communicator it would then be matched against SyncBatchNorm's collectives in that backward.
#pragma once

#include <cstddef>
#include <memory>
#include <unordered_map>
#include <vector>

#include "autodiff/var.hpp"
#include "layers/distributed/communicator.hpp"
#include "layers/module.hpp"

namespace xgrad {

template <class T>
class DataParallel {
public:
    // Collective: every rank constructs it (it duplicates the communicator).
    DataParallel(Module<T>& model, std::shared_ptr<Communicator> communicator, std::size_t bucket_bytes = 1 << 20);

    // root's parameters' values and buffers (running statistics and their counters) on every rank.
    void broadcast_state(int root = 0);
    // root's buffers alone: where each rank's BatchNorm moved its own running statistics, rank 0's
    // become everyone's (torch's DDP does this before every forward; a trainer, before it
    // evaluates or saves).
    void broadcast_buffers(int root = 0);
    // Every parameter's gradient := the sum over ranks of its gradient (a rank without a gradient
    // for it adds 0; a parameter no rank has a gradient for keeps none).
    void reduce_gradients();
    // loss.backward(seed), then reduce_gradients(), with the reduction running during the backward
    // (see above). Should backward throw, the job cannot go on: collectives already started are
    // abandoned (their buffers are never freed, as MPI may still write them).
    void backward(const Var<T>& loss, const xt::xarray<T>& seed);

    std::size_t bucket_count() const { return buckets_.size(); }
    // Of the buckets, those the last backward() started before backward was done.
    std::size_t overlapped_buckets() const { return overlapped_; }

private:
    struct Bucket {
        std::vector<std::size_t> parameters;  // indices into parameters_
        std::size_t unfinished = 0;           // of its parameters, those whose gradient backward has yet to finish
        // Kept from step to step: each parameter's "has a gradient" flag and gradient, and every rank's.
        std::vector<T> packed, gathered;
        std::unique_ptr<PendingCollective> pending;
    };

    // Packs bucket k's gradients and starts their all-gather.
    void start(std::size_t k);
    // Starts every bucket not started yet, then waits for each and writes the sums over ranks.
    void finish();

    Module<T>& model_;
    std::shared_ptr<Communicator> communicator_;
    std::vector<Var<T>> parameters_;  // reverse registration order
    std::vector<Bucket> buckets_;
    std::unordered_map<const Node<T>*, std::size_t> bucket_of_;  // a parameter's node -> its bucket
    std::size_t started_ = 0;                                      // buckets started, in order
    std::size_t overlapped_ = 0;
};

extern template class DataParallel<float>;
extern template class DataParallel<double>;

}  // namespace xgrad
