// config.json and summary.json as a run directory's reader takes them (experiments/json_file.hpp,
// train_config.hpp, model_config.hpp): parsed as an object (a std::runtime_error otherwise), put
// in today's keys, compared with a configuration, and read as a model's configuration (a
// std::invalid_argument naming the key otherwise).
#include <stdexcept>

#include "experiments/json_file.hpp"
#include "experiments/model_config.hpp"
#include "experiments/train_config.hpp"
#include "fuzz/harness.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    static const nlohmann::json default_config = xgrad::to_json(xgrad::TrainConfig{});
    nlohmann::json recorded;
    try {
        recorded = xgrad::with_current_keys(xgrad::parse_json_object(xgrad_fuzz::input_bytes(data, size), "fuzz/config.json"));
    } catch (const std::runtime_error&) {
        return 0;
    }
    xgrad::first_difference(recorded, default_config);
    try {
        xgrad::check_model_config(xgrad::model_config_from_json(recorded));
    } catch (const std::invalid_argument&) {
    }
    return 0;
}
