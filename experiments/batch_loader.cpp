#include "experiments/batch_loader.hpp"

#include <algorithm>
#include <numeric>
#include <random>
#include <stdexcept>
#include <string>

namespace xgrad {

std::size_t rank_share_size(std::size_t n, std::size_t rank, std::size_t ranks) {
    return n > rank ? (n - rank + ranks - 1) / ranks : 0;
}

Batch rank_share(const Batch& batch, std::size_t rank, std::size_t ranks) {
    const std::size_t n = batch.labels.size();
    const std::size_t mine = rank_share_size(n, rank, ranks);
    auto shape = batch.images.shape();
    const std::size_t per_sample = n > 0 ? batch.images.size() / n : 0;
    shape[0] = mine;
    Batch out{xt::xarray<float>::from_shape(shape), xt::xarray<std::int64_t>::from_shape({mine})};
    for (std::size_t k = 0; k < mine; ++k) {
        const std::size_t i = rank + k * ranks;
        std::copy_n(batch.images.data() + i * per_sample, per_sample, out.images.data() + k * per_sample);
        out.labels(k) = batch.labels(i);
    }
    return out;
}

BatchLoader::BatchLoader(const Dataset& data, BatchLoaderOptions options)
    : data_(&data), options_(options), samples_(data.labels.size()) {
    if (data.images.dimension() == 0 || data.images.shape()[0] != samples_ || data.labels.dimension() != 1) {
        throw std::invalid_argument("dataset '" + data.name + "': images and labels do not hold the same samples");
    }
    if (batches_per_epoch() == 0) {
        std::string rule;
        if (options.drop_last) {
            rule = " with drop_last";
        } else if (options.smallest_batch > 1) {
            rule = " nor a smaller one of at least " + std::to_string(options.smallest_batch) + " samples";
        }
        throw std::invalid_argument("dataset '" + data.name + "' has " + std::to_string(samples_) +
                                    " samples: no batch of size " + std::to_string(options.batch_size) + rule);
    }
    seek(0, 0);
}

std::size_t BatchLoader::batches_per_epoch() const {
    const std::size_t b = options_.batch_size;
    if (b == 0) {
        return 0;
    }
    const std::size_t rest = samples_ % b;
    const bool last_taken = rest > 0 && !options_.drop_last && rest >= options_.smallest_batch;
    return samples_ / b + (last_taken ? 1 : 0);
}

std::size_t BatchLoader::last_batch_size() const {
    const std::size_t rest = samples_ - (batches_per_epoch() - 1) * options_.batch_size;
    return std::min(rest, options_.batch_size);
}

void BatchLoader::seek(std::size_t epoch, std::size_t batch) {
    if (batch >= batches_per_epoch()) {
        throw std::out_of_range("batch " + std::to_string(batch) + " of an epoch of " +
                                std::to_string(batches_per_epoch()) + " batches");
    }
    if (order_.empty() || epoch != epoch_) {
        order_ = order(epoch);
    }
    epoch_ = epoch;
    batch_ = batch;
}

std::vector<std::size_t> BatchLoader::order(std::size_t epoch) const {
    std::vector<std::size_t> indices(samples_);
    std::iota(indices.begin(), indices.end(), std::size_t{0});
    if (!options_.shuffle) {
        return indices;
    }
    const auto low = [](std::uint64_t v) { return static_cast<std::uint32_t>(v); };
    std::seed_seq seeds{low(options_.seed), low(options_.seed >> 32), low(epoch), low(std::uint64_t{epoch} >> 32)};
    std::mt19937_64 rng(seeds);
    // Fisher-Yates written out (std::shuffle's draws differ between standard libraries); the modulo's
    // bias is below samples / 2^64.
    for (std::size_t i = samples_; i > 1; --i) {
        std::swap(indices[i - 1], indices[rng() % i]);
    }
    return indices;
}

Batch BatchLoader::next() {
    const std::size_t first = batch_ * options_.batch_size;
    const std::size_t size = std::min(options_.batch_size, samples_ - first);
    const auto& shape = data_->images.shape();
    const std::size_t sample_size = data_->images.size() / samples_;

    std::vector<std::size_t> batch_shape(shape.begin(), shape.end());
    batch_shape[0] = size;
    if (options_.flatten) {
        batch_shape = {size, sample_size};
    }
    Batch out{xt::xarray<float>::from_shape(batch_shape), xt::xarray<std::int64_t>::from_shape({size})};
    for (std::size_t i = 0; i < size; ++i) {
        const std::size_t sample = order_[first + i];
        std::copy_n(data_->images.data() + sample * sample_size, sample_size, out.images.data() + i * sample_size);
        out.labels(i) = data_->labels(sample);
    }

    if (batch_ + 1 < batches_per_epoch()) {
        ++batch_;
    } else {
        seek(epoch_ + 1, 0);
    }
    return out;
}

}  // namespace xgrad
