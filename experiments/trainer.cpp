#include "experiments/trainer.hpp"

#include <chrono>
#include <cmath>
#include <memory>
#include <stdexcept>
#include <vector>

#include <tbb/global_control.h>

#include "autodiff/blas.hpp"
#include "autodiff/grad_mode.hpp"
#include "experiments/atomic_file.hpp"
#include "experiments/batch_loader.hpp"
#include "experiments/checkpoint.hpp"
#include "experiments/dataset.hpp"
#include "experiments/evaluation.hpp"
#include "experiments/json_file.hpp"
#include "experiments/metrics_log.hpp"
#include "experiments/models.hpp"
#include "experiments/progress.hpp"
#include "layers/adam.hpp"
#include "layers/cross_entropy.hpp"
#include "layers/sgd.hpp"

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
    for (auto& [name, child] : model.named_children()) {
        if (Rng* generator = child->generator()) out.emplace_back("rng/" + name, generator);
    }
    return out;
}

bool all_finite(const xt::xarray<float>& a) {
    for (float v : a) {
        if (!std::isfinite(v)) return false;
    }
    return true;
}

// Replays the batch layer by layer to name the first layer whose output is not finite.
std::string first_nonfinite_layer(Sequential<float>& model, const xt::xarray<float>& images) {
    if (!all_finite(images)) return "the input batch";
    NoGrad no_grad;
    Var<float> x(images);
    for (auto& [name, child] : model.named_children()) {
        x = child->forward(x);
        if (!all_finite(x.value())) return child->where();
    }
    return "none (every layer's output is finite; the loss itself overflowed)";
}

// Ghost BN's virtual batch against the batches of an epoch of `samples`: below the batch size (at
// it or above, every batch is one virtual batch, which is --norm batch), and never leaving a last
// virtual batch of one sample, which has one value per feature after a Linear.
void check_virtual_batches(const TrainConfig& c, std::size_t samples) {
    const std::size_t b = c.model.ghost_batch;
    const std::string flag = "--ghost-batch " + std::to_string(b);
    if (b >= c.batch) {
        throw std::invalid_argument(flag + " is not below --batch " + std::to_string(c.batch) +
                                    ": every batch would be one virtual batch, which is --norm batch");
    }
    const auto check = [&](std::size_t batch, const std::string& which) {
        if (batch % b != 1) return;
        throw std::invalid_argument(flag + " splits " + which + " of " + std::to_string(batch) +
                                    " samples into virtual batches whose last has one sample, which has one value per "
                                    "feature after a Linear; choose a virtual batch that leaves none of one");
    };
    check(c.batch, "each batch (--batch)");
    if (samples % c.batch != 0) check(samples % c.batch, "an epoch's last batch");
}

struct RunFiles {
    fs::path config, metrics, checkpoint, summary;
    explicit RunFiles(const fs::path& dir)
        : config(dir / "config.json"), metrics(dir / "metrics.csv"), checkpoint(dir / "checkpoint.npz"),
          summary(dir / "summary.json") {}
};

// Throws unless the run in `files` was started with `config` (config.json in today's keys).
void check_same_config(const RunFiles& files, const nlohmann::json& config) {
    const nlohmann::json existing = with_current_keys(read_json_file(files.config));
    if (auto key = first_difference(existing, config)) {
        throw std::runtime_error(files.config.string() + " belongs to a run with another configuration ('" + *key +
                                 "' was " + (existing.contains(*key) ? existing[*key].dump() : "absent") + ", now " +
                                 (config.contains(*key) ? config[*key].dump() : "absent") +
                                 "); choose another output directory");
    }
}

// Writes config.json for a new run, or checks that an existing run was started with the same one.
void claim_directory(const RunFiles& files, const nlohmann::json& config) {
    if (!fs::exists(files.config)) {
        write_json_file(files.config, config);
        return;
    }
    check_same_config(files, config);
}

}  // namespace

TrainOutcome train(const TrainConfig& config, const fs::path& dir, const std::string& label, const Probe& probe) {
    const RunFiles files(dir);
    const nlohmann::json config_json = to_json(config);
    if (fs::exists(files.summary)) {
        // Reused only for the configuration it was trained with, never for another one.
        check_same_config(files, config_json);
        nlohmann::json summary = read_json_file(files.summary);
        return {summary.value("status", "finished"), summary, true};
    }
    tbb::global_control threads(tbb::global_control::max_allowed_parallelism, config.threads);

    Rng rng(config.seed);
    // Before the directory is claimed: a configuration they reject, or data that do not load, leave
    // no run directory behind.
    auto model = make_model(config.model, rng);
    auto optimizer = make_optimizer(config, model->parameters());
    const bool flat = model_takes_flat_input(config.model.name);
    const DatasetOptions data_options{.synthetic_size = config.synthetic_size, .synthetic_seed = config.seed};
    const Dataset train_set = load_dataset(config.dataset, Split::train, data_options);
    const Dataset test_set = load_dataset(config.dataset, Split::test,
                                          {.synthetic_size = std::max<std::size_t>(config.synthetic_size / 4, 1),
                                           .synthetic_seed = config.seed});
    if (config.model.norm == Norm::ghost) check_virtual_batches(config, train_set.labels.size());
    fs::create_directories(dir);
    claim_directory(files, config_json);

    BatchLoader loader(train_set, {.batch_size = config.batch, .seed = config.seed, .flatten = flat});
    const std::size_t total_steps = config.steps ? config.steps : config.epochs * loader.batches_per_epoch();
    if (total_steps == 0 || config.eval_every == 0) {
        throw std::invalid_argument("a run needs at least one step and eval_every >= 1");
    }

    std::size_t step = 0;
    double seconds_before = 0;  // training time of earlier sessions of this run
    std::vector<MetricsRow> rows;
    if (fs::exists(files.checkpoint)) {
        TrainerState state;
        load_checkpoint(files.checkpoint, *model, optimizer.get(), &state);
        // Checked against this configuration: each step reads one batch, so the loader's place
        // follows from the step.
        step = state.get_count("step", 0, total_steps, "the run's steps");
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
    }

    Progress progress(label, total_steps, step);
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
        ++step;
        optimizer->zero_grad();
        const Var<float> logits = (*model)(Var<float>(batch.images));
        const Var<float> loss = cross_entropy(logits, batch.labels);
        const double loss_value = loss.value()();
        if (!std::isfinite(loss_value) || loss_value > config.divergence_loss) {
            status = "diverged";
            divergence = {{"step", step}, {"loss", std::isfinite(loss_value) ? nlohmann::json(loss_value) : nlohmann::json("non-finite")},
                          {"first_nonfinite_layer", first_nonfinite_layer(*model, batch.images)}};
            progress.report(label + ": diverged at step " + std::to_string(step) + " (loss " + std::to_string(loss_value) +
                            "); first layer with a non-finite output: " + divergence["first_nonfinite_layer"].get<std::string>());
            break;
        }
        loss.backward();
        optimizer->step();
        loss_sum += loss_value;
        right += count_correct(logits.value(), batch.labels);
        seen += batch.labels.size();
        ++batches;
        progress.update(step, loss_sum / static_cast<double>(batches), static_cast<double>(right) / static_cast<double>(seen));

        if (step % config.eval_every == 0 || step == total_steps) {
            const Evaluation test = evaluate(*model, test_set, flat, config.eval_samples);
            rows.push_back({step, epoch, loss_sum / static_cast<double>(batches),
                            static_cast<double>(right) / static_cast<double>(seen), test.loss, test.accuracy,
                            optimizer->lr(), elapsed(), probe ? probe(*model, batch) : std::vector<std::pair<std::string, double>>{}});
            loss_sum = 0;
            right = seen = batches = 0;
            char line[200];
            std::snprintf(line, sizeof line, "%s: step %zu  train_loss %.4f  train_acc %.4f  test_loss %.4f  test_acc %.4f",
                          label.c_str(), step, rows.back().train_loss, rows.back().train_acc, test.loss, test.accuracy);
            progress.report(line);
            // Metrics before the checkpoint: a kill between the two leaves rows past the
            // checkpoint, which the resumed run drops and writes again.
            write_file_atomically(files.metrics, metrics_csv(rows));
            TrainerState state;
            state.set_int("step", static_cast<std::int64_t>(step));
            state.set_int("epoch", static_cast<std::int64_t>(loader.epoch()));
            state.set_int("batch", static_cast<std::int64_t>(loader.batch()));
            state.set_real("seconds", elapsed());
            for (auto& [name, generator] : run_generators(*model)) state.set_rng(name, *generator);
            save_checkpoint(files.checkpoint, *model, optimizer.get(), &state);
        }
    }
    progress.finish();
    // Once more at the end: a run that diverged before its first evaluation gets its (empty)
    // metrics.csv, and one resumed past rows written after its checkpoint loses them.
    write_file_atomically(files.metrics, metrics_csv(rows));

    nlohmann::json summary = {{"status", status}, {"steps", step}, {"seconds", elapsed()}, {"config", config_json}};
    if (!rows.empty()) {
        summary["final_test_acc"] = rows.back().test_acc;
        summary["final_test_loss"] = rows.back().test_loss;
        double best = 0;
        for (const auto& r : rows) best = std::max(best, r.test_acc);
        summary["best_test_acc"] = best;
    }
    if (status == "diverged") summary["divergence"] = divergence;
    write_json_file(files.summary, summary);
    return {status, summary, false};
}

}  // namespace xgrad
