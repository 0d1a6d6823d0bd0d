#include "experiments/json_file.hpp"

#include <fstream>
#include <stdexcept>

#include "experiments/atomic_file.hpp"

namespace xgrad {

nlohmann::json read_json_file(const std::filesystem::path& path) {
    std::ifstream in(path);
    if (!in) throw std::runtime_error("cannot open " + path.string());
    try {
        return nlohmann::json::parse(in);
    } catch (const nlohmann::json::parse_error& e) {
        throw std::runtime_error(path.string() + ": not valid JSON: " + e.what());
    }
}

void write_json_file(const std::filesystem::path& path, const nlohmann::json& value) {
    write_file_atomically(path, value.dump(2) + "\n");
}

}  // namespace xgrad
