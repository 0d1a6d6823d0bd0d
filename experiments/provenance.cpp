#include "experiments/provenance.hpp"

#include <string_view>

#include "autodiff/blas.hpp"

namespace xgrad {

// experiments/build_info.cpp, generated at build time.
extern const char xgrad_version[], build_compiler[], build_commit[];

namespace {

constexpr std::string_view dirty_suffix = "-dirty";

}  // namespace

nlohmann::json provenance(std::size_t threads, std::size_t world_size) {
    const std::string_view described = build_commit;
    const bool dirty = described.ends_with(dirty_suffix);
    return {{"xgrad_version", std::string(xgrad_version)},
            {"commit", std::string(described.substr(0, described.size() - (dirty ? dirty_suffix.size() : 0)))},
            {"dirty", dirty},
            {"compiler", std::string(build_compiler)},
            {"blas", {{"config", blas_config()}, {"kernels", blas_kernels()}}},
            {"threads", threads},
            {"world_size", world_size}};
}

std::string this_build() { return build_commit; }

std::string build_of(const nlohmann::json& run_record) {
    const auto recorded = run_record.find("provenance");
    if (recorded == run_record.end() || !recorded->is_object()) return "unrecorded";
    const auto commit = recorded->find("commit");
    const auto dirty = recorded->find("dirty");
    if (commit == recorded->end() || !commit->is_string() || dirty == recorded->end() || !dirty->is_boolean()) {
        return "unrecorded";
    }
    return commit->get<std::string>() + (dirty->get<bool>() ? std::string(dirty_suffix) : "");
}

}  // namespace xgrad
