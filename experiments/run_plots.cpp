#include "experiments/run_plots.hpp"

#include <map>
#include <stdexcept>
#include <string>

#include "experiments/activations_log.hpp"
#include "experiments/plot.hpp"

namespace xgrad {

namespace fs = std::filesystem;

namespace {

// Per layer, in the order of their first row: the distribution plot, and the saturation curve.
std::vector<PlotFile> activation_plots(const fs::path& csv, const fs::path& dir) {
    std::vector<std::string> order;
    std::map<std::string, Curve> band, mean, saturated;
    for (const auto& r : read_activations_csv(csv)) {
        if (!band.contains(r.layer)) {
            order.push_back(r.layer);
            band[r.layer].label = "p50, band p15 to p85";
            mean[r.layer].label = "mean";
            saturated[r.layer].label = r.layer;
        }
        const double step = static_cast<double>(r.step);
        Curve& b = band[r.layer];
        b.x.push_back(step);
        b.mean.push_back(r.p50);
        b.lo.push_back(r.p15);
        b.hi.push_back(r.p85);
        mean[r.layer].x.push_back(step);
        mean[r.layer].mean.push_back(r.mean);
        if (r.saturated) {
            saturated[r.layer].x.push_back(step);
            saturated[r.layer].mean.push_back(*r.saturated);
        }
    }
    std::vector<PlotFile> plots;
    PlotSpec saturation{"fraction of sigmoid/tanh inputs with |x| > 3", "training step", "saturated fraction", false, {}};
    for (const auto& layer : order) {
        const PlotSpec spec{"layer " + layer + " on the first test images", "training step",
                            "a nonlinearity's input, another layer's output", false, {band[layer], mean[layer]}};
        plots.push_back({spec, dir / std::string("activations_").append(layer).append(".png")});
        if (!saturated[layer].x.empty()) saturation.curves.push_back(saturated[layer]);
    }
    if (!saturation.curves.empty()) plots.push_back({saturation, dir / "saturation.png"});
    return plots;
}

}  // namespace

std::vector<fs::path> plot_run(const fs::path& dir) {
    const fs::path metrics = dir / "metrics.csv", activations = dir / "activations.csv";
    if (!fs::exists(metrics) && !fs::exists(activations)) {
        throw std::runtime_error(dir.string() + " holds neither metrics.csv nor activations.csv: not a run directory");
    }
    std::vector<PlotFile> plots;
    if (fs::exists(metrics)) {
        plots.push_back({test_accuracy_plot({{dir.filename().string(), metrics}}, std::string("test accuracy of ").append(dir.string())),
                         dir / "test_accuracy.png"});
    }
    if (fs::exists(activations)) {
        for (auto& p : activation_plots(activations, dir)) plots.push_back(std::move(p));
    }
    plot(plots);
    std::vector<fs::path> written;
    for (const PlotFile& p : plots) written.push_back(p.png);
    return written;
}

}  // namespace xgrad
