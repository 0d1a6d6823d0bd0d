// metrics.csv: one row per evaluation of a run, rewritten whole (atomically) at each evaluation
// so a reader never sees half a row, and read back when a run resumes.
#pragma once

#include <cstddef>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace xgrad {

// A metrics row without a column a reader asked for (runs of an earlier build whose probe wrote
// other columns).
struct MissingMetricsColumn : std::out_of_range {
    using std::out_of_range::out_of_range;
};

struct MetricsRow {
    std::size_t step = 0;
    std::size_t epoch = 0;
    double train_loss = 0;  // mean over the training batches since the previous row
    double train_acc = 0;
    double test_loss = 0;
    double test_acc = 0;
    double lr = 0;
    double seconds = 0;  // training time since the run started, over all its sessions
    // A driver's own measurements at this evaluation (experiments/probes.hpp), as further
    // columns; every row of a file has the same names in the same order.
    std::vector<std::pair<std::string, double>> extra;

    // The extra column `name`; MissingMetricsColumn naming it if the row has none.
    double at(const std::string& name) const;
};

inline constexpr const char* metrics_header = "step,epoch,train_loss,train_acc,test_loss,test_acc,lr,seconds";

// std::invalid_argument if the rows' extra columns differ.
std::string metrics_csv(const std::vector<MetricsRow>& rows);
// The rows of a metrics.csv, whose lines may end in "\n" or "\r\n"; a std::runtime_error naming
// `source` and the line for a row that does not parse.
std::vector<MetricsRow> parse_metrics_csv(std::string_view bytes, const std::string& source);
// The same for a regular file (an UnreadableFile otherwise).
std::vector<MetricsRow> read_metrics_csv(const std::filesystem::path& path);

}  // namespace xgrad
