// Everything that defines a training run, as the `xgrad train` flags and as config.json.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "experiments/flag_range.hpp"
#include "experiments/model_config.hpp"

namespace xgrad {

struct TrainConfig {
    ModelConfig model;
    std::string dataset = "fashion-mnist";
    std::string optimizer = "adam";  // "sgd" or "adam"
    double lr = 1e-3;
    double momentum = 0.0;  // SGD only
    std::size_t batch = 64;
    std::size_t epochs = 1;
    std::size_t steps = 0;  // when nonzero, the run's length instead of `epochs`
    std::size_t eval_every = 100;
    std::size_t eval_samples = 0;  // test images per evaluation; 0: the whole test set
    std::size_t synthetic_size = 2000;  // training images of the "synthetic" data set
    // When nonzero, the run trains on the first train_subset images of the training set only
    // (experiments/run_data.hpp); evaluation keeps the whole test set.
    std::size_t train_subset = 0;
    // A loss above this (or a non-finite one) ends the run as diverged.
    double divergence_loss = 1e3;
    std::uint64_t seed = 0;
    // Speed only on the own convolutions: no sum depends on the thread count, so the weights come
    // out bitwise the same. Not on oneDNN's, whose runs are resumed only with the same threads.
    std::size_t threads = 2;
    // Conv2d's backend, "own" or "onednn" (layers/conv_backend.hpp): speed, and the rounding of the
    // convolutions, so a resumed run must repeat it.
    std::string conv_backend = "own";
    // Layers (dotted paths) whose activations.csv rows each evaluation writes
    // (activation_statistics.hpp); no effect on the weights. Part of the configuration a resumed run
    // must repeat, so that the file holds the same layers throughout.
    std::vector<std::string> record_activations;
};

// The valid ranges of the training flags and of TrainConfig's fields: wide enough for any run of
// these models, narrow enough that a typo is not a run that never ends or allocates terabytes.
namespace train_range {
inline constexpr WholeRange batch{1, 1'000'000};
inline constexpr WholeRange epochs{1, 1'000'000};
inline constexpr WholeRange steps{1, 100'000'000};
inline constexpr WholeRange eval_every{1, 100'000'000};
inline constexpr WholeRange eval_samples{0, 1'000'000};  // 0: the whole test set
inline constexpr WholeRange synthetic_size{1, 1'000'000};  // 3 GB of images at most
inline constexpr WholeRange train_subset{0, 1'000'000};  // 0: the whole training set
inline constexpr WholeRange seed{0, 4'294'967'295};  // numpy's and torch's DataLoader's seeds are 32 bits
inline constexpr WholeRange threads{1, 1024};
inline constexpr RealRange lr = RealRange::above(0);
inline constexpr RealRange momentum = RealRange::closed_open(0, 1);
}  // namespace train_range

// A std::invalid_argument naming the flag and its valid range for the first field of `config` out
// of it (the model's settings as check_model_config checks them), or --momentum with another
// optimizer than SGD, or an empty or repeated --record-activations name; the run's directory is
// not touched before this passes.
void check_train_config(const TrainConfig& config);

// config.json: the model's keys (model_config.hpp) beside the training's.
nlohmann::json to_json(const TrainConfig& config);
// A config.json as to_json writes it today: runs begun before `--norm` recorded "bn": true/false,
// which is "norm": "batch"/"none".
nlohmann::json with_current_keys(nlohmann::json recorded);
// The name of the first field whose value differs, if any (threads ignored unless either side is on
// --conv-backend onednn; a field one side lacks matches false or an empty list on the other: a flag
// added later is off in older runs). Both sides in today's keys (with_current_keys).
std::optional<std::string> first_difference(const nlohmann::json& a, const nlohmann::json& b);

}  // namespace xgrad
