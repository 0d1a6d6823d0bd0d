#include "experiments/trainer.hpp"

#include <array>
#include <chrono>
#include <cmath>
#include <cstddef>
#include <cstdio>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <stdexcept>
#include <vector>

#include <tbb/global_control.h>
#include <xtensor/xbuilder.hpp>
#include <xtensor/xview.hpp>

#include "autodiff/blas.hpp"
#include "autodiff/grad_mode.hpp"
#include "experiments/activations_log.hpp"
#include "experiments/atomic_file.hpp"
#include "experiments/batch_loader.hpp"
#include "experiments/checkpoint.hpp"
#include "experiments/dataset.hpp"
#include "experiments/evaluation.hpp"
#include "experiments/json_file.hpp"
#include "experiments/metrics_log.hpp"
#include "experiments/models.hpp"
#include "experiments/nonfinite.hpp"
#include "experiments/progress.hpp"
#include "experiments/provenance.hpp"
#include "experiments/run_data.hpp"
#include "experiments/run_lock.hpp"
#include "layers/adam.hpp"
#include "layers/conv_backend.hpp"
#include "layers/cross_entropy.hpp"
#include "layers/distributed/data_parallel.hpp"
#include "layers/normalization/ghost_batch_norm.hpp"
#include "layers/sgd.hpp"
#include "layers/submodules.hpp"

namespace xgrad {

namespace {

namespace fs = std::filesystem;

std::unique_ptr<Optimizer<float>> make_optimizer(const TrainConfig& c, std::vector<Var<float>> params) {
    if (c.optimizer == "sgd") return std::make_unique<SGD<float>>(std::move(params), SgdOptions{.lr = c.lr, .momentum = c.momentum});
    if (c.optimizer == "adam") return std::make_unique<Adam<float>>(std::move(params), AdamOptions{.lr = c.lr});
    throw std::invalid_argument("unknown optimizer '" + c.optimizer + "' (known: sgd, adam)");
}

// The generators a run draws from after it has started: its random layers' (Dropout, noise).
std::vector<std::pair<std::string, Rng*>> run_generators(Sequential<float>& model) {
    std::vector<std::pair<std::string, Rng*>> out;
    for (Module<float>* module : submodules(model)) {
        if (Rng* generator = module->generator()) out.emplace_back("rng/" + module->path(), generator);
    }
    return out;
}

// A loss or threshold in a message: 4.5e+07, 1000, nan.
std::string number(double value) {
    char text[32];
    std::snprintf(text, sizeof text, "%g", value);
    return text;
}

// summary.json's "divergence" for a training loss that is not finite or above `threshold`: the
// loss, the cause in words and, for a non-finite loss, the first layer with a non-finite output.
nlohmann::json loss_divergence(Sequential<float>& model, const xt::xarray<float>& images, double loss, double threshold) {
    if (std::isfinite(loss)) {
        return {{"loss", loss},
                {"cause", "the training loss " + number(loss) + " is above divergence_loss " + number(threshold)}};
    }
    const auto layer = first_nonfinite_layer(model, images);
    nlohmann::json divergence = {
        {"loss", "non-finite"},
        {"cause", "the training loss is " + number(loss) + "; " +
                      (layer ? "the first layer with a non-finite output is " + *layer
                             : "every layer's output is finite, so the loss itself overflowed")}};
    if (layer) divergence["first_nonfinite_layer"] = *layer;
    return divergence;
}

// Whether a layer of the model, at any depth, takes its statistics over the batch (BatchNorm and
// the layers built on it), which has one value per feature after a Linear when the batch has one
// sample. Read off the model, since a spec model's layers need not follow --norm.
bool normalizes_over_the_batch(const Module<float>& model) {
    for (const Module<float>* module : submodules(model)) {
        if (dynamic_cast<const BatchNorm<float>*>(module)) return true;
    }
    return false;
}

// Each Ghost BN layer's virtual batch against the batches of `loader`'s epochs: below the batch
// size (at it or above, every batch is one virtual batch, which is BatchNorm), and never leaving a
// last virtual batch of one sample, which has one value per feature after a Linear.
void check_virtual_batches(const Module<float>& model, std::size_t batch_size, const BatchLoader& loader) {
    for (const Module<float>* module : submodules(model)) {
        const auto* ghost = dynamic_cast<const GhostBatchNorm<float>*>(module);
        if (!ghost) continue;
        const std::size_t b = ghost->virtual_batch();
        const std::string layer = ghost->path() + "'s virtual batch of " + std::to_string(b) + " (--ghost-batch, or ghost_batch in a model spec)";
        if (b >= batch_size) {
            throw std::invalid_argument(layer + " is not below --batch " + std::to_string(batch_size) +
                                        ": every batch would be one virtual batch, which is --norm batch");
        }
        const auto check = [&](std::size_t batch, const std::string& which) {
            if (batch % b != 1) return;
            throw std::invalid_argument(layer + " splits " + which + " of " + std::to_string(batch) +
                                        " samples into virtual batches whose last has one sample, which has one value per "
                                        "feature after a Linear; choose a virtual batch that leaves none of one");
        };
        check(batch_size, "each batch (--batch)");
        if (loader.last_batch_size() != batch_size) check(loader.last_batch_size(), "an epoch's last batch");
    }
}

// The smallest of the shares of a batch of n (the last ranks').
std::size_t smallest_share(std::size_t n, std::size_t ranks) { return n / ranks; }

// Throws on every rank unless every rank was started with the same configuration.
void check_same_config_on_every_rank(Communicator& job, const nlohmann::json& config) {
    if (job.size() == 1) return;
    const std::uint64_t hash = std::hash<std::string>{}(config.dump());
    const std::array<double, 2> mine{static_cast<double>(hash >> 32), static_cast<double>(hash & 0xffffffffu)};
    std::vector<double> every(2 * static_cast<std::size_t>(job.size()));
    job.all_gather(mine, every);
    for (int r = 1; r < job.size(); ++r) {
        if (every[2 * r] != every[0] || every[2 * r + 1] != every[1]) {
            throw std::invalid_argument("rank " + std::to_string(r) + " of " + std::to_string(job.size()) +
                                        " was started with another configuration than rank 0; every rank of a "
                                        "data-parallel run takes the same flags");
        }
    }
}

// One forward pass in training mode, on a model of its own, for each size of batch the run will
// take, so that a configuration the model cannot train on (a norm given one value per channel, a
// layer given the wrong shape) is refused before anything is written, not at some later step. Over
// several ranks each takes the smallest share of the batch (its own with SyncBatchNorm, whose
// statistics are the whole batch's), so that every rank reaches the same verdict.
void check_batches_train(const TrainConfig& c, const BatchLoader& loader, const Dataset& data, bool flat,
                         Communicator& job) {
    const std::size_t ranks = static_cast<std::size_t>(job.size());
    const auto share = [&](std::size_t n) {
        if (ranks == 1) return n;
        if (c.model.sync_bn) return rank_share_size(n, static_cast<std::size_t>(job.rank()), ranks);
        return smallest_share(n, ranks);
    };
    Rng rng(c.seed);
    auto model = make_model(c.model, rng);
    model->train();
    NoGrad no_grad;
    std::vector<std::size_t> sizes{loader.batches_per_epoch() > 1 ? c.batch : loader.last_batch_size()};
    if (loader.last_batch_size() != sizes.front()) sizes.push_back(loader.last_batch_size());
    for (std::size_t size : sizes) {
        const std::size_t local = share(size);
        std::vector<std::size_t> shape(data.images.shape().begin(), data.images.shape().end());
        shape[0] = local;
        if (flat) shape = {local, data.images.size() / data.labels.size()};
        try {
            (void)(*model)(Var<float>(xt::xarray<float>(xt::zeros<float>(shape))));
        } catch (const std::exception& e) {
            const std::string over = ranks == 1 ? "" : " over " + std::to_string(ranks) + " ranks, a share of " +
                                                           std::to_string(local);
            throw std::invalid_argument("the model's forward fails on a training batch of " + std::to_string(size) +
                                        " samples (" + (size == c.batch ? "--batch" : "an epoch's last batch") + over +
                                        "): " + e.what());
        }
    }
}

// The evaluation of the model every rank holds: rank 0's, given to the others (the same model, so
// the others would only repeat it; evaluation in eval mode runs no collective).
Evaluation evaluate_once(Communicator& job, Module<float>& model, const Dataset& data, bool flat, std::size_t samples) {
    Evaluation e;
    if (job.rank() == 0) e = evaluate(model, data, flat, samples);
    if (job.size() == 1) return e;
    std::array<double, 3> figures{e.loss, e.accuracy, e.nonfinite ? 1.0 : 0.0};
    job.broadcast(std::as_writable_bytes(std::span(figures)), 0);
    e.loss = figures[0];
    e.accuracy = figures[1];
    if (figures[2] != 0.0 && !e.nonfinite) e.nonfinite = "rank 0's evaluation found a non-finite value (its summary.json says where)";
    return e;
}

// The images --record-activations measures on: the first of the test set, the same at every
// evaluation and whatever the ranks.
xt::xarray<float> activation_sample(const Dataset& test_set, bool flat) {
    const std::size_t count = std::min(activation_sample_images, test_set.labels.size());
    xt::xarray<float> images = xt::view(test_set.images, xt::range(0, count));
    if (flat) images.reshape({count, images.size() / count});
    return images;
}

struct RunFiles {
    fs::path config, metrics, checkpoint, summary, activations;
    explicit RunFiles(const fs::path& dir)
        : config(dir / "config.json"), metrics(dir / "metrics.csv"), checkpoint(dir / "checkpoint.npz"),
          summary(dir / "summary.json"), activations(dir / "activations.csv") {}
};

// Throws unless the run in `files` was started with `config` (config.json in today's keys). The
// build that started it does not matter here: a run resumes under another (run_all's choice).
void check_same_config(const RunFiles& files, const nlohmann::json& config) {
    nlohmann::json existing = with_current_keys(read_json_file(files.config));
    existing.erase("provenance");
    if (auto key = first_difference(existing, config)) {
        // A value such as a whole model spec is cut to its start: the key says what differs.
        const auto shown = [&key](const nlohmann::json& json) -> std::string {
            if (!json.contains(*key)) return "absent";
            const std::string text = json[*key].dump();
            return text.size() <= 100 ? text : text.substr(0, 97) + "...";
        };
        throw std::runtime_error(files.config.string() + " belongs to a run with another configuration ('" + *key + "' was " +
                                 shown(existing) + ", now " + shown(config) + "); choose another output directory");
    }
}

// Throws, naming the file and the key, unless `summary` has the keys and types this file writes: a
// status "finished" or "diverged", whole steps, seconds and accuracies as numbers (null: a NaN).
void check_summary(const nlohmann::json& summary, const fs::path& path) {
    const auto fail = [&](const std::string& key, const std::string& expected) {
        throw std::runtime_error(path.string() + ": key '" + key + "' must be " + expected + ", found " +
                                 (summary.contains(key) ? summary[key].dump() : "nothing"));
    };
    const auto status = summary.find("status");
    if (status == summary.end() || !status->is_string() || (*status != "finished" && *status != "diverged")) {
        fail("status", "\"finished\" or \"diverged\"");
    }
    if (!summary.contains("steps") || !summary["steps"].is_number_unsigned()) fail("steps", "a whole number");
    if (!summary.contains("seconds") || !summary["seconds"].is_number() || summary["seconds"] < 0) {
        fail("seconds", "a number of seconds");
    }
    for (const char* key : {"final_test_acc", "final_test_loss", "best_test_acc"}) {
        if (summary.contains(key) && !summary[key].is_number() && !summary[key].is_null()) fail(key, "a number");
    }
}

// The outcome of the run in `files` if it has finished; it must have been started with `config`.
std::optional<TrainOutcome> finished_run(const RunFiles& files, const nlohmann::json& config) {
    if (!fs::exists(files.summary)) return std::nullopt;
    check_same_config(files, config);
    nlohmann::json summary = read_json_file(files.summary);
    check_summary(summary, files.summary);
    return TrainOutcome{summary.at("status").get<std::string>(), summary, true};
}

// Writes config.json for a new run, with the provenance of the build that starts it, or checks
// that an existing run was started with the same configuration.
void claim_directory(const RunFiles& files, const nlohmann::json& config, const nlohmann::json& started_by) {
    if (!fs::exists(files.config)) {
        nlohmann::json recorded = config;
        recorded["provenance"] = started_by;
        write_json_file(files.config, recorded);
        return;
    }
    check_same_config(files, config);
}

}  // namespace

std::optional<TrainOutcome> finished_outcome(const TrainConfig& config, const fs::path& dir) {
    check_train_config(config);
    return finished_run(RunFiles(dir), to_json(config));
}

void check_run_directory(const TrainConfig& config, const fs::path& dir) {
    const RunFiles files(dir);
    if (fs::exists(files.config)) check_same_config(files, to_json(config));
}

TrainOutcome train(const TrainConfig& config, const fs::path& dir, const std::string& label, const Probe& probe,
                   const std::shared_ptr<Communicator>& communicator) {
    check_train_config(config);  // every caller's configuration, the drivers' too; nothing written before it
    const RunFiles files(dir);
    const nlohmann::json config_json = to_json(config);
    // Data-parallel under mpirun: every rank trains the same model on its share of each batch;
    // rank 0 alone writes the run's files (README, "Distributed").
    if (launched_by_mpirun() && !built_with_mpi()) {
        throw std::invalid_argument("started by mpirun, but xgrad was built without MPI (meson option mpi): each "
                                    "process would train alone");
    }
    Communicator& job = *communicator;
    if (config.model.sync_bn && job.size() != world()->size()) {
        throw std::invalid_argument("--sync-bn: SyncBatchNorm's statistics span every rank of the job (" +
                                    std::to_string(world()->size()) + "), but this run trains on " +
                                    std::to_string(job.size()) +
                                    " (a sweep under mpirun trains each run on one rank): train it with xgrad train "
                                    "under mpirun");
    }
    const std::size_t ranks = static_cast<std::size_t>(job.size());
    const std::size_t rank = static_cast<std::size_t>(job.rank());
    const bool writes = rank == 0;
    const nlohmann::json this_provenance = provenance(config.threads, ranks);
    check_same_config_on_every_rank(job, config_json);
    if (auto finished = finished_run(files, config_json)) return *finished;
    tbb::global_control threads(tbb::global_control::max_allowed_parallelism, config.threads);
    const ConvBackendScope backend_scope(*parse_conv_backend(config.conv_backend));  // checked with the config

    Rng rng(config.seed);
    // Before the directory is claimed: a configuration they reject, or data that do not load, leave
    // no run directory behind.
    auto model = make_model(config.model, rng);
    check_recorded_layers(*model, config.record_activations);
    auto optimizer = make_optimizer(config, model->parameters());
    const bool flat = model_takes_flat_input(config.model);
    const Dataset train_set = training_set_of(config);
    const Dataset test_set = test_set_of(config);
    // An epoch's last batch of one sample is skipped where the norm needs more (README).
    BatchLoader loader(train_set, {.batch_size = config.batch,
                                   .seed = config.seed,
                                   .smallest_batch = normalizes_over_the_batch(*model) ? 2u : 1u,
                                   .flatten = flat});
    const std::size_t total_steps = config.steps ? config.steps : config.epochs * loader.batches_per_epoch();
    if (total_steps == 0 || config.eval_every == 0) {
        throw std::invalid_argument("a run needs at least one step and eval_every >= 1");
    }
    check_virtual_batches(*model, config.batch, loader);
    check_batches_train(config, loader, train_set, flat, job);
    std::optional<RunLock> lock;
    std::byte finished_meanwhile{0};
    if (writes) {
        fs::create_directories(dir);
        lock.emplace(dir);
        // Finished by the trainer that held the lock before this one.
        if (finished_run(files, config_json)) finished_meanwhile = std::byte{1};
        if (finished_meanwhile == std::byte{0}) claim_directory(files, config_json, this_provenance);
    }
    job.broadcast(std::span(&finished_meanwhile, 1), 0);  // the other ranks wait for rank 0's claim
    if (finished_meanwhile != std::byte{0}) return *finished_run(files, config_json);
    DataParallel<float> parallel(*model, communicator);

    std::size_t step = 0;
    double seconds_before = 0;  // training time of earlier sessions of this run
    std::vector<MetricsRow> rows;
    const bool records_activations = writes && !config.record_activations.empty();
    const xt::xarray<float> activation_images = records_activations ? activation_sample(test_set, flat) : xt::xarray<float>();
    std::vector<ActivationStatistics> activation_rows;
    if (fs::exists(files.checkpoint)) {
        TrainerState state;
        load_checkpoint(files.checkpoint, *model, optimizer.get(), &state);
        // Checked against this configuration: each step reads one batch, so the loader's place
        // follows from the step.
        step = state.get_count("step", 0, total_steps, "the run's steps");
        // A data-parallel run's steps depend on its ranks: local BatchNorm normalizes each share.
        const std::size_t saved_ranks = state.ints.contains("world_size") ? static_cast<std::size_t>(state.get_int("world_size")) : 1;
        if (saved_ranks != ranks) {
            throw std::runtime_error(files.checkpoint.string() + " was written by a run over " + std::to_string(saved_ranks) +
                                     " rank(s), and this one has " + std::to_string(ranks) + ": resume it with mpirun -np " +
                                     std::to_string(saved_ranks) + " (or without mpirun for 1), or use another output directory");
        }
        seconds_before = state.get_real_at_least("seconds", 0);
        const std::size_t per_epoch = loader.batches_per_epoch();
        const std::string place = "step " + std::to_string(step) + " at " + std::to_string(per_epoch) + " batches per epoch";
        const std::size_t epoch = state.get_count("epoch", step / per_epoch, step / per_epoch, place);
        loader.seek(epoch, state.get_count("batch", step % per_epoch, step % per_epoch, place));
        for (auto& [name, generator] : run_generators(*model)) state.restore_rng(name, *generator);
        if (fs::exists(files.metrics)) {
            rows = read_metrics_csv(files.metrics);
            std::erase_if(rows, [&](const MetricsRow& r) { return r.step > step; });  // written after the checkpoint
        }
        if (records_activations && fs::exists(files.activations)) {
            activation_rows = read_activations_csv(files.activations);
            std::erase_if(activation_rows, [&](const ActivationStatistics& r) { return r.step > step; });
        }
    }

    if (ranks > 1) parallel.broadcast_state();  // equal already (same seed, same checkpoint): made sure
    Progress progress(label, total_steps, step, writes ? stderr : nullptr);
    if (step > 0) progress.report(label + ": resuming at step " + std::to_string(step) + " from " + files.checkpoint.string());
    const auto session_start = std::chrono::steady_clock::now();
    auto elapsed = [&] {
        return seconds_before + std::chrono::duration<double>(std::chrono::steady_clock::now() - session_start).count();
    };
    double loss_sum = 0;
    std::size_t right = 0, seen = 0, batches = 0;
    std::string status = "finished";
    nlohmann::json divergence;
    model->train();
    while (step < total_steps) {
        const std::size_t epoch = loader.epoch();
        const Batch batch = loader.next();
        const Batch local = ranks > 1 ? rank_share(batch, rank, ranks) : Batch{};
        const Batch& mine = ranks > 1 ? local : batch;
        ++step;
        model->set_step(step);
        const bool evaluates = step % config.eval_every == 0 || step == total_steps;
        // Before the update, on the batch it is about to use: what the step sees (probes.hpp).
        std::vector<std::pair<std::string, double>> probe_values;
        if (evaluates && probe) probe_values = probe(*model, batch);
        optimizer->zero_grad();
        const Var<float> logits = (*model)(Var<float>(mine.images));
        const std::size_t n_mine = mine.labels.size(), n_all = batch.labels.size();
        std::optional<Var<float>> loss;
        if (n_mine > 0) loss = cross_entropy(logits, mine.labels);
        // The global batch's mean loss and correct answers: the same on every rank.
        std::vector<double> sums{loss ? loss->value()() * static_cast<double>(n_mine) : 0.0,
                                 static_cast<double>(count_correct(logits.value(), mine.labels))};
        all_reduce_sum(job, sums);
        const double loss_value = ranks > 1 ? sums[0] / static_cast<double>(n_all) : loss->value()();
        if (!std::isfinite(loss_value) || loss_value > config.divergence_loss) {
            divergence = loss_divergence(*model, mine.images, loss_value, config.divergence_loss);
            break;
        }
        if (ranks == 1) {
            loss->backward();
        } else {
            // From this rank's share of the global mean loss, so that the sum over ranks is its
            // gradient (layers/distributed/data_parallel.hpp), reduced while backward runs; a rank
            // with no sample still joins.
            if (loss) {
                parallel.backward(*loss, xt::xarray<float>(static_cast<float>(static_cast<double>(n_mine) /
                                                                               static_cast<double>(n_all))));
            } else {
                parallel.backward(logits, xt::zeros_like(logits.value()));
            }
        }
        optimizer->step();
        loss_sum += loss_value;
        right += static_cast<std::size_t>(sums[1]);
        seen += n_all;
        ++batches;
        progress.update(step, loss_sum / static_cast<double>(batches), static_cast<double>(right) / static_cast<double>(seen));

        if (evaluates) {
            // Each rank's BatchNorm moved its own running statistics; rank 0's are the run's.
            if (ranks > 1) parallel.broadcast_buffers();
            const Evaluation test = evaluate_once(job, *model, test_set, flat, config.eval_samples);
            if (test.nonfinite) {
                divergence = {{"cause", "at the evaluation: " + *test.nonfinite}};
                break;
            }
            rows.push_back({step, epoch, loss_sum / static_cast<double>(batches),
                            static_cast<double>(right) / static_cast<double>(seen), test.loss, test.accuracy,
                            optimizer->lr(), elapsed(), std::move(probe_values)});
            loss_sum = 0;
            right = seen = batches = 0;
            char line[200];
            std::snprintf(line, sizeof line, "%s: step %zu  train_loss %.4f  train_acc %.4f  test_loss %.4f  test_acc %.4f",
                          label.c_str(), step, rows.back().train_loss, rows.back().train_acc, test.loss, test.accuracy);
            progress.report(line);
            if (!writes) continue;
            // Metrics before the checkpoint: a kill between the two leaves rows past the
            // checkpoint, which the resumed run drops and writes again.
            write_file_atomically(files.metrics, metrics_csv(rows));
            if (records_activations) {
                for (auto& r : activation_statistics(*model, config.record_activations, activation_images)) {
                    activation_rows.push_back(std::move(r));
                }
                write_file_atomically(files.activations, activations_csv(activation_rows));
            }
            TrainerState state;
            state.set_int("step", static_cast<std::int64_t>(step));
            state.set_int("epoch", static_cast<std::int64_t>(loader.epoch()));
            state.set_int("batch", static_cast<std::int64_t>(loader.batch()));
            state.set_real("seconds", elapsed());
            if (ranks > 1) state.set_int("world_size", static_cast<std::int64_t>(ranks));
            for (auto& [name, generator] : run_generators(*model)) state.set_rng(name, *generator);
            save_checkpoint(files.checkpoint, *model, optimizer.get(), &state);
        }
    }
    if (!divergence.is_null()) {
        status = "diverged";
        divergence["step"] = step;
        progress.report(label + ": diverged at step " + std::to_string(step) + ": " + divergence["cause"].get<std::string>());
    }
    progress.finish();
    // Once more at the end: a run that diverged before its first evaluation gets its (empty)
    // metrics.csv, and one resumed past rows written after its checkpoint loses them.
    if (writes) write_file_atomically(files.metrics, metrics_csv(rows));
    if (records_activations) write_file_atomically(files.activations, activations_csv(activation_rows));

    nlohmann::json summary = {{"status", status}, {"steps", step}, {"seconds", elapsed()}, {"config", config_json}};
    if (!rows.empty()) {
        summary["final_test_acc"] = rows.back().test_acc;
        summary["final_test_loss"] = rows.back().test_loss;
        double best = 0;
        for (const auto& r : rows) best = std::max(best, r.test_acc);
        summary["best_test_acc"] = best;
    }
    if (status == "diverged") summary["divergence"] = divergence;
    if (ranks > 1) summary["world_size"] = ranks;
    summary["provenance"] = this_provenance;  // the build that ended the run, perhaps not the one that started it
    if (writes) write_json_file(files.summary, summary);
    return {status, summary, false};
}

}  // namespace xgrad
