// Checkpoints: a model's state in an .npz with exactly the keys, shapes and dtypes of PyTorch's
// state_dict for the same model (float32 parameters and buffers, "bn1.num_batches_tracked" as a
// 0-d int64), so torch's load_state_dict accepts it; plus, for resuming a run, the optimizer's
// state under "optimizer/" and the trainer's under "trainer/", prefixes no torch module has.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <map>
#include <stdexcept>
#include <string>

#include <xtensor/xarray.hpp>

#include "experiments/npz.hpp"
#include "layers/init.hpp"
#include "layers/module.hpp"
#include "layers/optimizer.hpp"

namespace xgrad {

// A checkpoint that does not fit what it is loaded into; the message names the file and the key.
class CheckpointError : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

// What a trainer needs to continue where it stopped, as named arrays (stored under
// "trainer/<name>"), so the checkpoint format does not depend on the trainer's fields.
struct TrainerState {
    std::map<std::string, xt::xarray<std::int64_t>> ints;
    std::map<std::string, xt::xarray<double>> reals;
    // The checkpoint it was loaded from, for error messages.
    std::string source;

    void set_int(const std::string& name, std::int64_t value) { ints[name] = xt::xarray<std::int64_t>(value); }
    void set_real(const std::string& name, double value) { reals[name] = xt::xarray<double>(value); }
    // The generator's state (its engine's words; uint64 stored as int64 bit patterns).
    void set_rng(const std::string& name, Rng& rng);

    // A CheckpointError naming the key if absent, of the other dtype or not a single value.
    std::int64_t get_int(const std::string& name) const;
    double get_real(const std::string& name) const;
    // The same, also a CheckpointError naming the key, the value and the range unless the value is
    // in [low, high] ("'trainer/step' is -1, expected 0 to 300 (the run's steps)"; `why` says
    // where the range comes from), or finite and at least `low`.
    std::size_t get_count(const std::string& name, std::size_t low, std::size_t high, const std::string& why) const;
    double get_real_at_least(const std::string& name, double low) const;
    // Puts `rng` back in the saved state; a CheckpointError if absent or not a generator state.
    void restore_rng(const std::string& name, Rng& rng) const;
};

// Saves the model's parameters and buffers under their dotted names; with an optimizer (SGD or
// Adam, whose parameters must be the model's) its per-parameter state under
// "optimizer/<parameter>/<field>", torch's field names: momentum_buffer; step, exp_avg, exp_avg_sq.
// The file is written atomically.
void save_checkpoint(const std::filesystem::path& path, const Module<float>& model, Optimizer<float>* optimizer = nullptr,
                     const TrainerState* trainer = nullptr);

// Loads what save_checkpoint wrote, checking first that every key is present with the shape and
// dtype expected, counts (batches tracked, Adam's steps) not negative, and that the file has no key
// the model lacks, so a failed load changes nothing. The file must be a regular file.
// Errors (CheckpointError, or NpzError for a corrupt file) read
//   "checkpoint run/checkpoint.npz: missing key 'bn1.running_var'"
//   "checkpoint run/checkpoint.npz: 'fc1.weight' has shape (128, 50176), the model expects (128, 3136)".
// Optimizer and trainer keys are read only when an optimizer or trainer state is given.
void load_checkpoint(const std::filesystem::path& path, Module<float>& model, Optimizer<float>* optimizer = nullptr,
                     TrainerState* trainer = nullptr);
// The same from an .npz already parsed; `source` names it in errors.
void load_checkpoint(const Npz& npz, const std::string& source, Module<float>& model, Optimizer<float>* optimizer = nullptr,
                     TrainerState* trainer = nullptr);

}  // namespace xgrad
