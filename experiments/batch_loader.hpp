// Batches of a Dataset in an order reshuffled every epoch. The order of epoch e depends only on
// (seed, e), so a run resumed at (epoch, batch) sees the same batches as one that never stopped.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include <xtensor/xarray.hpp>

#include "experiments/dataset.hpp"

namespace xgrad {

struct Batch {
    xt::xarray<float> images;         // (B, 1, 28, 28), or (B, 784) when flattened
    xt::xarray<std::int64_t> labels;  // (B)
};

// The samples of a batch of n in rank's share of it (rank_share), over `ranks` ranks.
std::size_t rank_share_size(std::size_t n, std::size_t rank, std::size_t ranks);

// This rank's share of a global batch, as torch's DistributedSampler deals an epoch's samples:
// samples rank, rank + W, rank + 2W, ... (none when the batch has fewer than rank + 1).
Batch rank_share(const Batch& batch, std::size_t rank, std::size_t ranks);

struct BatchLoaderOptions {
    std::size_t batch_size = 64;
    std::uint64_t seed = 0;
    bool shuffle = true;     // false: the data set's own order every epoch, as for evaluation
    bool drop_last = false;  // skip an epoch's last batch when it is smaller than batch_size
    // Skip an epoch's last batch when it has fewer samples than this: 2 for a model normalizing
    // over the batch, which cannot train on a single sample (one value per channel after a Linear).
    std::size_t smallest_batch = 1;
    bool flatten = false;    // images as (B, C * H * W), for MLPs
};

class BatchLoader {
public:
    // Throws std::invalid_argument when an epoch would have no batch. `data` must outlive the loader.
    BatchLoader(const Dataset& data, BatchLoaderOptions options);
    BatchLoader(const Dataset&& data, BatchLoaderOptions options) = delete;

    std::size_t batches_per_epoch() const;
    // The samples of an epoch's last batch (batch_size when the epoch divides evenly or its
    // incomplete last batch is skipped).
    std::size_t last_batch_size() const;
    // Where the next batch comes from.
    std::size_t epoch() const { return epoch_; }
    std::size_t batch() const { return batch_; }
    // Continue from batch `batch` of epoch `epoch`, as if every batch before it had been taken.
    void seek(std::size_t epoch, std::size_t batch);
    // The batch at the current position; then moves on, to the next epoch after the last batch.
    Batch next();
    // The sample indices in the order epoch `epoch` visits them.
    std::vector<std::size_t> order(std::size_t epoch) const;

private:
    const Dataset* data_;
    BatchLoaderOptions options_;
    std::size_t samples_;
    std::size_t epoch_ = 0;
    std::size_t batch_ = 0;
    std::vector<std::size_t> order_;  // of epoch_
};

}  // namespace xgrad
