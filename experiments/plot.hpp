// Plots through experiments/plot.py (matplotlib, run with /usr/bin/python3, which has it), which
// the library holds as a string: plotting needs no source tree. The data of every plot is kept
// beside it as <png>.json, the spec plot.py drew it from.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

namespace xgrad {

// One line: y = mean against x, with a shaded band from lo to hi when they are given.
struct Curve {
    std::string label;
    std::vector<double> x, mean, lo, hi;
};

struct PlotSpec {
    std::string title, xlabel, ylabel;
    bool log_x = false;
    std::vector<Curve> curves;
};

// Writes `png` (and <png>.json). Throws if the script fails.
void plot(const PlotSpec& spec, const std::filesystem::path& png);

struct PlotSeries {
    std::string label;
    std::filesystem::path metrics_csv;
};

// Test accuracy against steps, one line per run.
void plot_test_accuracy(const std::vector<PlotSeries>& series, const std::filesystem::path& png, const std::string& title);

}  // namespace xgrad
