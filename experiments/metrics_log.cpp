#include "experiments/metrics_log.hpp"

#include <cstdio>
#include <fstream>
#include <stdexcept>

namespace xgrad {

std::string metrics_csv(const std::vector<MetricsRow>& rows) {
    std::string out = std::string(metrics_header) + "\n";
    char line[256];
    for (const auto& r : rows) {
        std::snprintf(line, sizeof line, "%zu,%zu,%.6g,%.6g,%.6g,%.6g,%.6g,%.3f\n", r.step, r.epoch, r.train_loss,
                      r.train_acc, r.test_loss, r.test_acc, r.lr, r.seconds);
        out += line;
    }
    return out;
}

std::vector<MetricsRow> read_metrics_csv(const std::filesystem::path& path) {
    std::ifstream in(path);
    if (!in) throw std::runtime_error("cannot open " + path.string());
    std::string line;
    std::getline(in, line);
    if (line != metrics_header) {
        throw std::runtime_error(path.string() + ": line 1 is not the header '" + metrics_header + "'");
    }
    std::vector<MetricsRow> rows;
    for (std::size_t number = 2; std::getline(in, line); ++number) {
        MetricsRow r;
        int consumed = 0;
        const int fields = std::sscanf(line.c_str(), "%zu,%zu,%lf,%lf,%lf,%lf,%lf,%lf%n", &r.step, &r.epoch, &r.train_loss,
                                       &r.train_acc, &r.test_loss, &r.test_acc, &r.lr, &r.seconds, &consumed);
        if (fields != 8 || static_cast<std::size_t>(consumed) != line.size()) {
            throw std::runtime_error(path.string() + ": line " + std::to_string(number) + " is not a metrics row: '" +
                                     line + "'");
        }
        rows.push_back(r);
    }
    return rows;
}

}  // namespace xgrad
