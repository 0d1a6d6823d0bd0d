// A training run in its own directory: config.json, metrics.csv (a row per evaluation),
// checkpoint.npz (model, optimizer and trainer state, at every evaluation), with
// --record-activations activations.csv (activations_log.hpp, a row per layer and evaluation) and,
// once it has ended, summary.json. config.json and summary.json record under "provenance" the
// build that started the run and the one that ended it (provenance.hpp); a run resumes under any
// build. Every file is written atomically. A directory with a summary.json is a
// finished run and is never written again; one with a checkpoint resumes from it and ends with
// the same weights as a run that was never stopped (the batch order, dropout masks and every
// reduction are deterministic). Either is taken up only by the configuration it was started
// with; another one is refused. While a trainer works in a directory it holds its lock
// (run_lock.hpp), so a second one is refused too.
#pragma once

#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "experiments/batch_loader.hpp"
#include "experiments/train_config.hpp"
#include "layers/distributed/communicator.hpp"
#include "layers/sequential.hpp"

namespace xgrad {

struct TrainOutcome {
    // "finished", or "diverged" when the training loss went non-finite or above
    // config.divergence_loss, or an evaluation found a non-finite loss, parameter or buffer;
    // summary["divergence"]["cause"] says which, and where.
    std::string status;
    // The summary.json of the run; for a run found already finished, the one it holds.
    nlohmann::json summary;
    bool was_already_finished = false;
};

// What a driver measures at every evaluation besides loss and accuracy (experiments/probes.hpp):
// called at an evaluation's step before its update, with the model and the batch that update is
// about to use, it returns named values that become further metrics.csv columns of that step's row. It must leave the model as it found it (weights, buffers,
// generators), so that a resumed run stays bitwise the uninterrupted one.
using Probe = std::function<std::vector<std::pair<std::string, double>>(Sequential<float>& model, const Batch& batch)>;

// Trains as `config` says into `dir`, data-parallel over the ranks of `job` (README,
// "Distributed"). A diverged run is an outcome, not an error; bad configurations, data or
// checkpoints throw with a message naming what is wrong.
TrainOutcome train(const TrainConfig& config, const std::filesystem::path& dir, const std::string& label = "train",
                   const Probe& probe = {}, const std::shared_ptr<Communicator>& job = world());

// The outcome of the run in `dir` if it has finished; it must have been started with `config`.
std::optional<TrainOutcome> finished_outcome(const TrainConfig& config, const std::filesystem::path& dir);

// Throws, as train would, unless `dir` holds no run or one started with `config`; writes nothing,
// so that a set of runs can be checked before any of them starts.
void check_run_directory(const TrainConfig& config, const std::filesystem::path& dir);

}  // namespace xgrad
