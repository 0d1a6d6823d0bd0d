// The metrics.csv reader (experiments/metrics_log.hpp). Bad input must be a std::runtime_error;
// the rows it reads must be written back by metrics_csv and read again as as many rows.
#include <stdexcept>

#include "experiments/metrics_log.hpp"
#include "fuzz/harness.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    std::vector<xgrad::MetricsRow> rows;
    try {
        rows = xgrad::parse_metrics_csv(xgrad_fuzz::input_bytes(data, size), "fuzz/metrics.csv");
    } catch (const std::runtime_error&) {
        return 0;
    }
    if (xgrad::parse_metrics_csv(xgrad::metrics_csv(rows), "rewritten/metrics.csv").size() != rows.size()) {
        xgrad_fuzz::property_failed("rewriting changed the number of rows");
    }
    return 0;
}
