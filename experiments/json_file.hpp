// JSON files of run directories and experiments (config.json, summary.json, claims.json).
#pragma once

#include <filesystem>

#include <nlohmann/json.hpp>

namespace xgrad {

// std::runtime_error naming the file when it cannot be opened or is not valid JSON.
nlohmann::json read_json_file(const std::filesystem::path& path);
// Indented, written atomically (write_file_atomically).
void write_json_file(const std::filesystem::path& path, const nlohmann::json& value);

}  // namespace xgrad
