// JSON files of run directories and experiments (config.json, summary.json, claims.json); each
// holds one JSON object.
#pragma once

#include <filesystem>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

namespace xgrad {

// The object `bytes` hold; a std::runtime_error naming `source` when they are not valid JSON or
// hold another type ("<source>: expected a JSON object ({...}), found array"). Json is
// nlohmann::json (keys sorted) or nlohmann::ordered_json (keys in the file's order).
template <class Json = nlohmann::json>
Json parse_json_object(std::string_view bytes, const std::string& source);
// The same for a regular file (an UnreadableFile otherwise).
nlohmann::json read_json_file(const std::filesystem::path& path);
// Indented, written atomically (write_file_atomically).
void write_json_file(const std::filesystem::path& path, const nlohmann::json& value);

}  // namespace xgrad
