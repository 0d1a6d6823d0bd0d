// Where a run's figures come from: the xgrad version and the commit it was built from, the
// compiler, the BLAS kernels, and the threads and ranks the run took. config.json records it when
// a run starts, summary.json when it ends; `xgrad experiment` does not put runs of different
// builds in one table (experiment.hpp's run_all) and REPORT.md names the build of each section.
#pragma once

#include <cstddef>
#include <string>

#include <nlohmann/json.hpp>

namespace xgrad {

// {"xgrad_version", "commit", "dirty", "compiler", "blas": {"config", "kernels"}, "threads",
// "world_size"}. "commit" is the git commit the library was built from, "unknown" when it was
// built outside a git checkout (from a release tarball); "dirty" says whether tracked files
// differed from it.
nlohmann::json provenance(std::size_t threads, std::size_t world_size);

// The build that identifies runs: the commit, with "-dirty" appended when it was dirty. The exact
// string is the identity: two dirty builds of one commit (or two "unknown" ones) may hold different
// code, and nothing recorded tells them apart, so they count as the same build.
std::string this_build();

// The build that the "provenance" of a run's config.json or summary.json names, or "unrecorded"
// for a run recorded before provenance was (or with a "provenance" not as provenance() writes it).
std::string build_of(const nlohmann::json& run_record);

}  // namespace xgrad
