#include "experiments/json_file.hpp"

#include <stdexcept>
#include <string>

#include "experiments/atomic_file.hpp"
#include "experiments/regular_file.hpp"

namespace xgrad {

template <class Json>
Json parse_json_object(std::string_view bytes, const std::string& source) {
    Json value;
    try {
        value = Json::parse(bytes);
    } catch (const nlohmann::json::exception& e) {  // parse_error, and out_of_range for a number beyond double
        throw std::runtime_error(source + ": not valid JSON: " + e.what());
    }
    if (!value.is_object()) {
        throw std::runtime_error(source + ": expected a JSON object ({...}), found " + std::string(value.type_name()));
    }
    return value;
}

template nlohmann::json parse_json_object(std::string_view bytes, const std::string& source);
template nlohmann::ordered_json parse_json_object(std::string_view bytes, const std::string& source);

nlohmann::json read_json_file(const std::filesystem::path& path) {
    return parse_json_object(read_regular_file(path), path.string());
}

void write_json_file(const std::filesystem::path& path, const nlohmann::json& value) {
    write_file_atomically(path, value.dump(2) + "\n");
}

}  // namespace xgrad
