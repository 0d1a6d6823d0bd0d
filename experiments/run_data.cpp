#include "experiments/run_data.hpp"

#include <algorithm>
#include <stdexcept>
#include <string>

#include <xtensor/xview.hpp>

namespace xgrad {

Dataset training_set_of(const TrainConfig& config) {
    Dataset data = load_dataset(config.dataset, Split::train,
                                {.synthetic_size = config.synthetic_size, .synthetic_seed = config.seed});
    const std::size_t n = config.train_subset;
    if (n == 0) return data;
    if (n > data.labels.size()) {
        throw std::invalid_argument("--train-subset " + std::to_string(n) + ": the training set of " + config.dataset +
                                    " has " + std::to_string(data.labels.size()) + " images");
    }
    data.images = xt::xarray<float>(xt::view(data.images, xt::range(0, n)));
    data.labels = xt::xarray<std::int64_t>(xt::view(data.labels, xt::range(0, n)));
    return data;
}

Dataset test_set_of(const TrainConfig& config) {
    return load_dataset(config.dataset, Split::test,
                        {.synthetic_size = std::max<std::size_t>(config.synthetic_size / 4, 1), .synthetic_seed = config.seed});
}

}  // namespace xgrad
