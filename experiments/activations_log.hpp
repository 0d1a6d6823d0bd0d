// activations.csv: the rows of experiments/activation_statistics.hpp, one per recorded layer and
// evaluation, rewritten whole (atomically) at each evaluation as metrics.csv is, and read back when
// a run resumes or is plotted. Columns: step,layer,mean,std,p15,p50,p85,saturated; saturated is
// empty for a layer that is not a Sigmoid or Tanh.
#pragma once

#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "experiments/activation_statistics.hpp"

namespace xgrad {

inline constexpr const char* activations_header = "step,layer,mean,std,p15,p50,p85,saturated";

// Every number written so that it reads back as the same double.
std::string activations_csv(const std::vector<ActivationStatistics>& rows);
// The rows of an activations.csv (lines ending in "\n" or "\r\n"); a std::runtime_error naming
// `source` and the line for one that does not parse.
std::vector<ActivationStatistics> parse_activations_csv(std::string_view bytes, const std::string& source);
// The same for a regular file (an UnreadableFile otherwise).
std::vector<ActivationStatistics> read_activations_csv(const std::filesystem::path& path);

}  // namespace xgrad
