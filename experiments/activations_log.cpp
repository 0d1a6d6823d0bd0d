#include "experiments/activations_log.hpp"

#include <cmath>
#include <cstdlib>
#include <stdexcept>

#include "experiments/csv_text.hpp"
#include "experiments/regular_file.hpp"

namespace xgrad {

namespace {

constexpr std::size_t columns = 8;

// The whole field as a number, or nullopt.
std::optional<double> number(const std::string& field) {
    char* end = nullptr;
    const double value = std::strtod(field.c_str(), &end);
    if (field.empty() || *end != '\0') return std::nullopt;
    return value;
}

}  // namespace

std::string activations_csv(const std::vector<ActivationStatistics>& rows) {
    std::string out = std::string(activations_header) + "\n";
    // Appended piece by piece: GCC 12 misreports `"literal" + std::string` under -Wrestrict.
    for (const auto& r : rows) {
        out.append(std::to_string(r.step)).append(",").append(r.layer);
        for (double v : {r.mean, r.std, r.p15, r.p50, r.p85}) out.append(",").append(exact(v));
        out.append(",").append(r.saturated ? exact(*r.saturated) : std::string()).append("\n");
    }
    return out;
}

std::vector<ActivationStatistics> parse_activations_csv(std::string_view bytes, const std::string& source) {
    const std::vector<std::string> lines = text_lines(bytes);
    if (lines.empty() || lines.front() != activations_header) {
        throw std::runtime_error(source + ": line 1 is not the header '" + std::string(activations_header) + "'");
    }
    std::vector<ActivationStatistics> rows;
    for (std::size_t index = 1; index < lines.size(); ++index) {
        const std::vector<std::string> fields = split_commas(lines[index]);
        std::vector<double> values;
        for (std::size_t k = 0; k < fields.size() && k < columns - 1; ++k) {
            if (k == 1) continue;  // the layer's name
            if (auto value = number(fields[k])) values.push_back(*value);
        }
        const bool whole_step = !values.empty() && values[0] >= 0 && values[0] < 1e15 && values[0] == std::floor(values[0]);
        const std::optional<double> saturated = fields.size() == columns ? number(fields[7]) : std::nullopt;
        if (fields.size() != columns || values.size() != columns - 2 || !whole_step || fields[1].empty() ||
            (!fields[7].empty() && !saturated)) {
            throw std::runtime_error(source + ": line " + std::to_string(index + 1) +
                                     " is not a row of a whole step, a layer and six numbers (the last may be empty): '" +
                                     lines[index] + "'");
        }
        rows.push_back({static_cast<std::size_t>(values[0]), fields[1], values[1], values[2], values[3], values[4], values[5],
                        saturated});
    }
    return rows;
}

std::vector<ActivationStatistics> read_activations_csv(const std::filesystem::path& path) {
    return parse_activations_csv(read_regular_file(path), path.string());
}

}  // namespace xgrad
