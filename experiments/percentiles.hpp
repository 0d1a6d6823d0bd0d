// Percentiles as numpy computes them by default: linear interpolation between the closest ranks.
#pragma once

#include <vector>

namespace xgrad {

// The q-th quantile of `values` for each q in `quantiles` (each in [0, 1]); `values`, not empty
// and without NaN, is reordered. Selection, not a sort: linear in the number of values per q.
std::vector<double> percentiles(std::vector<float>& values, const std::vector<double>& quantiles);

}  // namespace xgrad
