// `xgrad plot RUN_DIR`: PNG plots of what a run directory holds, written beside its files
// (plot.hpp's machinery, so each has its <png>.json).
#pragma once

#include <filesystem>
#include <vector>

namespace xgrad {

// test_accuracy.png from metrics.csv; from activations.csv, activations_<layer>.png for each layer
// (p15 to p85 as a band around p50, and the mean, against the step) and, when a layer is a sigmoid
// or tanh, saturation.png (each such layer's saturated fraction against the step). Returns the
// PNGs written; a std::runtime_error naming `dir` if it holds neither file.
std::vector<std::filesystem::path> plot_run(const std::filesystem::path& dir);

}  // namespace xgrad
