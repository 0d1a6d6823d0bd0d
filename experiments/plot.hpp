// Plots through experiments/plot.py (matplotlib, run with /usr/bin/python3, which has it).
#pragma once

#include <filesystem>
#include <string>
#include <vector>

namespace xgrad {

struct PlotSeries {
    std::string label;
    std::filesystem::path metrics_csv;
};

// Test accuracy against steps, one line per series, written to `png`. Throws if the script fails.
void plot_test_accuracy(const std::vector<PlotSeries>& series, const std::filesystem::path& png, const std::string& title);

}  // namespace xgrad
