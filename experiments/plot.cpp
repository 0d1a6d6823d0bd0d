#include "experiments/plot.hpp"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <stdexcept>

#include <nlohmann/json.hpp>

#include "experiments/atomic_file.hpp"
#include "experiments/metrics_log.hpp"

namespace xgrad {

namespace {

// Single-quoted for the shell: every ' becomes '\''.
std::string quoted(const std::string& s) {
    std::string q = "'";
    for (char c : s) {
        if (c == '\'') q.append("'\\''");
        else q.push_back(c);
    }
    q.push_back('\'');
    return q;
}

// Writes <png>.json, the spec plot.py draws `png` from; returns its path.
std::filesystem::path write_spec(const PlotSpec& spec, const std::filesystem::path& png) {
    nlohmann::json curves = nlohmann::json::array();
    for (const auto& c : spec.curves) {
        curves.push_back({{"label", c.label}, {"x", c.x}, {"mean", c.mean}, {"lo", c.lo}, {"hi", c.hi}});
    }
    nlohmann::json json = {{"title", spec.title}, {"xlabel", spec.xlabel}, {"ylabel", spec.ylabel},
                           {"log_x", spec.log_x}, {"curves", curves}};
    if (spec.y_range) json["y_range"] = {spec.y_range->lo, spec.y_range->hi};
    std::filesystem::path spec_path = png;
    spec_path += ".json";
    write_file_atomically(spec_path, json.dump(1) + "\n");
    return spec_path;
}

}  // namespace

// experiments/plot.py, built into the library (experiments/meson.build).
extern const char plot_script[];

void plot(const std::vector<PlotFile>& plots, const std::filesystem::path& dir) {
    if (plots.empty()) return;
    // One thread for numpy's OpenBLAS: its idle threads spun in sched_yield for a third of the
    // process's time. Built by appending: GCC 12 misreports `"literal" + std::string` under
    // -Wrestrict. The script as an argument, well below the kernel's 128 KiB limit on one: a pipe
    // to python's stdin could raise SIGPIPE here if python ended before reading it.
    std::string command = "OPENBLAS_NUM_THREADS=1 /usr/bin/python3 -c ";
    command.append(quoted(plot_script));
    std::string pngs;
    for (const PlotFile& p : plots) {
        const std::filesystem::path png = dir / p.png;  // p.png itself when dir is empty or p.png absolute
        command.append(" ").append(quoted(write_spec(p.spec, png).string())).append(" ").append(quoted(png.string()));
        pngs.append(pngs.empty() ? "" : ", ").append(png.string());
    }
    if (std::system(command.c_str()) != 0) {
        throw std::runtime_error("plotting failed: /usr/bin/python3 exited with an error drawing " + pngs +
                                 " (each from its .json beside it; python's error above names the one that failed)");
    }
}

void plot(const PlotSpec& spec, const std::filesystem::path& png) { plot({PlotFile{spec, png}}); }

AxisRange zoomed_y_range(const std::vector<Curve>& curves, double skip_fraction, double percentile) {
    std::vector<double> kept, all;
    for (const Curve& c : curves) {
        const auto skipped = static_cast<std::size_t>(std::ceil(skip_fraction * static_cast<double>(c.mean.size())));
        for (std::size_t i = 0; i < c.mean.size(); ++i) {
            if (!std::isfinite(c.mean[i])) continue;
            all.push_back(c.mean[i]);
            if (i >= skipped) kept.push_back(c.mean[i]);
        }
    }
    std::vector<double>& values = kept.size() > 1 ? kept : all;
    if (values.empty()) return {0, 1};
    std::sort(values.begin(), values.end());
    const double lo = values[static_cast<std::size_t>(percentile * static_cast<double>(values.size() - 1))];
    const double hi = values.back();
    const double pad = hi > lo ? 0.05 * (hi - lo) : 0.5 * std::max(std::abs(hi), 1e-3);
    return {lo - pad, hi + pad};
}

AxisRange widened_to(AxisRange range, double y) {
    const double pad = 0.05 * (std::max(range.hi, y) - std::min(range.lo, y));
    if (y < range.lo) range.lo = y - pad;
    if (y > range.hi) range.hi = y + pad;
    return range;
}

PlotSpec test_accuracy_plot(const std::vector<PlotSeries>& series, const std::string& title) {
    PlotSpec spec{title, "training step", "test accuracy", false, {}};
    for (const auto& s : series) {
        Curve curve{s.label, {}, {}, {}, {}};
        for (const auto& row : read_metrics_csv(s.metrics_csv)) {
            curve.x.push_back(static_cast<double>(row.step));
            curve.mean.push_back(row.test_acc);
        }
        spec.curves.push_back(std::move(curve));
    }
    return spec;
}

}  // namespace xgrad
