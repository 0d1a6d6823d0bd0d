#include "experiments/metrics_log.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <stdexcept>

#include "experiments/csv_text.hpp"
#include "experiments/regular_file.hpp"

namespace xgrad {

namespace {

std::string extra_names(const MetricsRow& row) {
    std::string names;
    for (const auto& [name, value] : row.extra) names += "," + name;
    return names;
}

}  // namespace

double MetricsRow::at(const std::string& name) const {
    for (const auto& [key, value] : extra) {
        if (key == name) return value;
    }
    throw MissingMetricsColumn("metrics row of step " + std::to_string(step) + " has no column '" + name + "'");
}

std::string metrics_csv(const std::vector<MetricsRow>& rows) {
    const std::string extras = rows.empty() ? "" : extra_names(rows.front());
    std::string out = std::string(metrics_header) + extras + "\n";
    char field[64];
    for (const auto& r : rows) {
        if (extra_names(r) != extras) {
            throw std::invalid_argument("metrics row of step " + std::to_string(r.step) + " has the extra columns '" +
                                        extra_names(r) + "', the first row '" + extras + "'");
        }
        std::snprintf(field, sizeof field, "%zu,%zu,", r.step, r.epoch);
        out += field;
        for (double v : {r.train_loss, r.train_acc, r.test_loss, r.test_acc, r.lr}) {
            out += exact(v);
            out += ',';
        }
        std::snprintf(field, sizeof field, "%.3f", r.seconds);
        out += field;
        for (const auto& [name, value] : r.extra) {
            out += ',';
            out += exact(value);
        }
        out += "\n";
    }
    return out;
}

std::vector<MetricsRow> parse_metrics_csv(std::string_view bytes, const std::string& source) {
    const std::vector<std::string> lines = text_lines(bytes);
    const std::string line = lines.empty() ? "" : lines.front();
    const std::string standard = metrics_header;
    if (line.compare(0, standard.size(), standard) != 0 || (line.size() > standard.size() && line[standard.size()] != ',')) {
        throw std::runtime_error(source + ": line 1 does not start with the header '" + standard + "'");
    }
    const std::vector<std::string> names = split_commas(line);
    constexpr std::size_t standard_columns = 8;
    std::vector<MetricsRow> rows;
    for (std::size_t index = 1; index < lines.size(); ++index) {
        const std::vector<std::string> fields = split_commas(lines[index]);
        std::vector<double> values;
        for (const auto& f : fields) {
            char* end = nullptr;
            const double value = std::strtod(f.c_str(), &end);
            if (f.empty() || *end != '\0') break;  // the size check below reports the row
            values.push_back(value);
        }
        const auto counter = [](double v) { return v >= 0 && v < 1e15 && v == std::floor(v); };
        if (fields.size() != names.size() || values.size() != names.size() || !counter(values[0]) || !counter(values[1])) {
            throw std::runtime_error(source + ": line " + std::to_string(index + 1) + " is not a metrics row of " +
                                     std::to_string(names.size()) + " numbers (step and epoch whole): '" + lines[index] + "'");
        }
        MetricsRow r;
        r.step = static_cast<std::size_t>(values[0]);
        r.epoch = static_cast<std::size_t>(values[1]);
        r.train_loss = values[2];
        r.train_acc = values[3];
        r.test_loss = values[4];
        r.test_acc = values[5];
        r.lr = values[6];
        r.seconds = values[7];
        for (std::size_t k = standard_columns; k < names.size(); ++k) r.extra.emplace_back(names[k], values[k]);
        rows.push_back(std::move(r));
    }
    return rows;
}

std::vector<MetricsRow> read_metrics_csv(const std::filesystem::path& path) {
    return parse_metrics_csv(read_regular_file(path), path.string());
}

}  // namespace xgrad
