// Plots through experiments/plot.py (matplotlib, run with /usr/bin/python3, which has it), which
// the library holds as a string: plotting needs no source tree. The data of every plot is kept
// beside it as <png>.json, the spec plot.py drew it from.
#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

namespace xgrad {

// One line: y = mean against x, with a shaded band from lo to hi when they are given.
struct Curve {
    std::string label;
    std::vector<double> x, mean, lo, hi;
};

struct AxisRange {
    double lo, hi;
};

struct PlotSpec {
    std::string title, xlabel, ylabel;
    bool log_x = false;
    std::vector<Curve> curves;
    // The y-axis drawn; matplotlib's own range (every value and band) when absent.
    std::optional<AxisRange> y_range = std::nullopt;
};

// A y-range zoomed on where the curves differ rather than on their first steps: from the
// `percentile` (in [0, 1]) of the curves' means, each curve's first `skip_fraction` of points left
// out, to the highest of them, with 5% of that span added either side (every mean counts when
// fewer than two are left; 0..1 without any).
AxisRange zoomed_y_range(const std::vector<Curve>& curves, double skip_fraction = 0.1, double percentile = 0.05);
// `range` widened, when y lies outside it, to show y with 5% of the new span beyond it (a target
// accuracy whose crossing the plot is about).
AxisRange widened_to(AxisRange range, double y);

// A plot and the file it is drawn to.
struct PlotFile {
    PlotSpec spec;
    std::filesystem::path png;
};

// Writes each png (and <png>.json), a relative png under `dir`, all in one run of python: its
// start and matplotlib's import took 0.6 s of a small plot's 0.9. Throws if the script fails.
void plot(const std::vector<PlotFile>& plots, const std::filesystem::path& dir = {});
void plot(const PlotSpec& spec, const std::filesystem::path& png);

struct PlotSeries {
    std::string label;
    std::filesystem::path metrics_csv;
};

// Test accuracy against steps, one line per run.
PlotSpec test_accuracy_plot(const std::vector<PlotSeries>& series, const std::string& title);

}  // namespace xgrad
