// `xgrad report`: experiments/REPORT.md regenerated from the drivers' claims.json files.
#pragma once

#include <filesystem>
#include <string>

namespace xgrad {

// Reads <results>/<driver>/claims.json for every driver (drivers.hpp, in order) and writes the
// report to `out` atomically: the builds (commits) that made the runs, one table of every claim
// with its verdict, then a section per experiment with its setup, the build of its runs, tables,
// plots (linked relative to `out`), verdict rules and the training time of its runs. A driver without results is listed as not run. Returns the
// number of claims.
// Throws, leaving `out` as it was, when `results` is not a directory or holds no driver's
// claims.json, and, unless `force`, when `out` is a report of more claims than the new one.
std::size_t write_report(const std::filesystem::path& results, const std::filesystem::path& out, bool force = false);

}  // namespace xgrad
