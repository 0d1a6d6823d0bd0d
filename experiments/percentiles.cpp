#include "experiments/percentiles.hpp"

#include <algorithm>
#include <cmath>
#include <cstddef>

namespace xgrad {

std::vector<double> percentiles(std::vector<float>& values, const std::vector<double>& quantiles) {
    std::vector<double> out;
    for (double q : quantiles) {
        const double position = q * static_cast<double>(values.size() - 1);
        const auto lo = static_cast<std::size_t>(std::floor(position));
        std::nth_element(values.begin(), values.begin() + static_cast<std::ptrdiff_t>(lo), values.end());
        // After the selection every value past `lo` is at least values[lo]; the next rank is their least.
        const float next = lo + 1 < values.size()
                               ? *std::min_element(values.begin() + static_cast<std::ptrdiff_t>(lo) + 1, values.end())
                               : values[lo];
        out.push_back(values[lo] + (position - static_cast<double>(lo)) * (next - values[lo]));
    }
    return out;
}

}  // namespace xgrad
