#include "layers/normalization/running_statistics.hpp"

#include <stdexcept>

namespace xgrad {

template <class T>
void move_running_statistics(const Grouping& grouping, const Moments& batch, const Rows& groups,
                             const RunningStats<T>& running) {
    const double n = static_cast<double>(grouping.group_size());
    const double unbiased = n / (n - 1.0);
    const double f = running.factor;
    const auto move = [&](std::size_t c, double mean, double var) {
        running.mean[c] = static_cast<T>((1.0 - f) * static_cast<double>(running.mean[c]) + f * mean);
        running.var[c] = static_cast<T>((1.0 - f) * static_cast<double>(running.var[c]) + f * var);
    };
    if (grouping.is_per_channel()) {
        for (std::size_t c = groups.begin; c < groups.end; ++c) move(c, batch.mean[c], batch.var[c] * unbiased);
        return;
    }
    if (grouping.rows_per_group() != 1 || !groups.whole) {
        throw std::invalid_argument("running statistics: defined per channel or per instance, not for groups of " +
                                    std::to_string(grouping.rows_per_group()) + " channels");
    }
    const std::size_t samples = grouping.shape().n;
    const std::size_t channels = grouping.shape().c;
    for (std::size_t c = 0; c < channels; ++c) {
        double mean = 0.0;
        double var = 0.0;
        for (std::size_t s = 0; s < samples; ++s) {
            mean += batch.mean[s * channels + c];
            var += batch.var[s * channels + c] * unbiased;
        }
        move(c, mean / static_cast<double>(samples), var / static_cast<double>(samples));
    }
}

template void move_running_statistics(const Grouping&, const Moments&, const Rows&, const RunningStats<float>&);
template void move_running_statistics(const Grouping&, const Moments&, const Rows&, const RunningStats<double>&);

}  // namespace xgrad
