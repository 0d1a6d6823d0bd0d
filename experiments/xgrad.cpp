// The xgrad command line: train, eval, experiment, sweep, report, plot.
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <iostream>
#include <memory>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include <CLI/CLI.hpp>

#include "autodiff/memory.hpp"
#include "experiments/batch_loader.hpp"
#include "experiments/checkpoint.hpp"
#include "experiments/dataset.hpp"
#include "experiments/drivers.hpp"
#include "experiments/evaluation.hpp"
#include "experiments/json_file.hpp"
#include "experiments/model_spec.hpp"
#include "experiments/models.hpp"
#include "experiments/report.hpp"
#include "experiments/run_plots.hpp"
#include "experiments/seed_cnn_bn.hpp"
#include "experiments/sweep.hpp"
#include "experiments/train_flags.hpp"
#include "experiments/trainer.hpp"
#include "layers/distributed/communicator.hpp"
#include "layers/normalization/precise_bn.hpp"

namespace {

using namespace xgrad;

// What eval builds: the model that config.json beside the checkpoint records, in a run directory,
// with which every model flag given must agree (config.json's keys are the flags' names);
// elsewhere, the flags' model.
ModelConfig model_to_evaluate(const std::filesystem::path& checkpoint, const ModelConfig& from_flags,
                              const std::vector<CLI::Option*>& model_flags) {
    const std::filesystem::path config = checkpoint.parent_path() / "config.json";
    if (!std::filesystem::exists(config)) return from_flags;
    const nlohmann::json recorded = with_current_keys(read_json_file(config));
    ModelConfig model;
    try {
        model = model_config_from_json(recorded);
    } catch (const std::invalid_argument& e) {
        throw std::runtime_error(config.string() + ": " + e.what());
    }
    if (model.name == spec_model_name) model.spec_source = config.string() + "'s model_spec";
    const nlohmann::json ours = to_json(from_flags), theirs = to_json(model);
    for (CLI::Option* option : model_flags) {
        if (option->count() == 0) continue;
        const std::string flag = option->get_name();
        std::string key = flag == "--bn" ? "norm" : flag.substr(2);
        std::replace(key.begin(), key.end(), '-', '_');
        const auto value = [&key](const nlohmann::json& json) { return json.contains(key) ? json.at(key) : nlohmann::json(); };
        if (value(ours) != value(theirs)) {
            throw std::invalid_argument(flag + " " + option->as<std::string>() + " contradicts " + config.string() +
                                        ", which records " + key + " " + value(theirs).dump() +
                                        " (without the flag, eval builds the model the run recorded)");
        }
    }
    return model;
}

int run_train(const TrainConfig& config, const std::string& out) {
    const TrainOutcome outcome = train(config, out);
    if (outcome.was_already_finished) {
        std::cout << out << " holds a finished run; it is not overwritten. Its summary:\n";
    }
    std::cout << outcome.summary.dump(2) << "\n";
    return outcome.status == "finished" ? 0 : 3;
}

// eval --recalibrate: PreciseBN over the first `batches` training batches `xgrad train` would
// take with this batch size and seed (epoch 0 onwards, an epoch's incomplete last batch skipped).
struct RecalibrateOptions {
    std::size_t batches = 0;  // 0: no recalibration
    std::size_t batch_size = 64;
    std::uint64_t seed = 0;
};
// --recalibrate N: a million batches is far beyond what PreciseBN's averages need.
constexpr WholeRange recalibrate_batches{1, 1'000'000};

// eval_samples: the first that many test images (0: all of them), as train's --eval-samples.
int run_eval(const std::string& checkpoint, const ModelConfig& model_config, const std::string& dataset,
             std::size_t eval_samples, const RecalibrateOptions& recalibrate) {
    Rng rng(0);
    auto model = make_model(model_config, rng);
    load_checkpoint(checkpoint, *model);
    const bool flat = model_takes_flat_input(model_config);
    const Dataset test = load_dataset(dataset, Split::test);
    const Evaluation e = evaluate(*model, test, flat, eval_samples);
    if (e.nonfinite) throw std::runtime_error(checkpoint + ": " + *e.nonfinite);
    std::printf("test accuracy: %.4f\ntest loss: %.4f\n", e.accuracy, e.loss);
    if (recalibrate.batches == 0) return 0;

    const Dataset train_set = load_dataset(dataset, Split::train);
    BatchLoader loader(train_set, {.batch_size = recalibrate.batch_size, .seed = recalibrate.seed, .drop_last = true,
                                   .flatten = flat});
    const std::size_t layers = recalibrate_batch_norm<float>(*model, recalibrate.batches,
                                                             [&loader](std::size_t) { return loader.next().images; });
    if (layers == 0) {
        std::printf("no BatchNorm layer with running statistics: nothing to recalibrate\n");
        return 0;
    }
    std::printf("recalibrated %zu BatchNorm layers over %zu training batches of %zu (seed %llu)\n", layers,
                recalibrate.batches, recalibrate.batch_size, static_cast<unsigned long long>(recalibrate.seed));
    const Evaluation r = evaluate(*model, test, flat, eval_samples);
    if (r.nonfinite) throw std::runtime_error(checkpoint + ", recalibrated: " + *r.nonfinite);
    std::printf("recalibrated test accuracy: %.4f\nrecalibrated test loss: %.4f\n", r.accuracy, r.loss);
    return 0;
}

// --results and --jobs, for the commands that train sets of runs (experiment, sweep).
void add_experiment_options(CLI::App* cmd, ExperimentOptions& options) {
    cmd->add_option("--results", options.results, "Root of the results directories")
        ->check(path_of("the results directory"))->capture_default_str();
    cmd->add_option("--jobs", options.jobs, "Runs trained at once, one thread each (by each rank under mpirun; there 1 unless given)")
        ->check(in_range(experiment_range::jobs, "the number of runs trained at once"))->capture_default_str();
    cmd->add_flag("--rerun-stale", options.rerun_stale,
                  "Delete and train again the runs another build (commit) made, which are otherwise refused");
}

// Under mpirun the runs are dealt out to the ranks, each training one at a time unless --jobs says
// otherwise (a rank per core).
void spread_over_ranks(ExperimentOptions& options, const CLI::App* cmd) {
    options.ranks = world();
    if (world()->size() > 1 && cmd->count("--jobs") == 0) options.jobs = 1;
}

// Under mpirun every rank trains its share of the runs; rank 0 alone prints.
std::ostream& printed_by(const ExperimentOptions& options) {
    static std::ostream silent(nullptr);
    return options.writes_report() ? std::cout : silent;
}

void run_experiment(const std::string& name, const ExperimentOptions& options, const SeedCnnBnOptions& seed_cnn_bn) {
    std::ostream& out = printed_by(options);
    if (name == "seed-cnn-bn") return run_seed_cnn_bn(seed_cnn_bn, out);
    for (const Driver& d : drivers()) {
        if (name != d.name && name != "all") continue;
        const auto start = std::chrono::steady_clock::now();
        out << "== " << d.name << " (profile " << profile_name(options.profile) << ")\n";
        ExperimentOptions own_builds = options;  // claims.json names the builds of this driver's runs alone
        own_builds.run_builds = std::make_shared<std::set<std::string>>();
        try {
            d.run(own_builds, out);
        } catch (const MissingMetricsColumn& e) {
            // Runs reused from an earlier build whose probe measured other columns than this driver reads.
            std::string builds;
            for (const std::string& b : *own_builds.run_builds) builds += (builds.empty() ? "" : ", ") + b;
            throw std::runtime_error(d.name + ": " + e.what() + " in the runs under " + (options.results / d.name).string() +
                                     ", made by build " + builds + ", whose probes wrote other columns than this build's "
                                     "driver reads: give --rerun-stale to train them again");
        }
        out << "== " << d.name << ": " << std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count()
            << " s" << std::endl;
    }
}

// The command, argv[1], named when it is missing or unknown: CLI11's own message for both is "A
// subcommand is required". A flag there (--help) is CLI11's.
void require_known_command(const CLI::App& app, int argc, char** argv) {
    if (argc >= 2 && std::string_view(argv[1]).starts_with("-")) return;
    const std::string given = argc >= 2 ? argv[1] : "";
    std::string known;
    for (const CLI::App* cmd : app.get_subcommands([](const CLI::App*) { return true; })) {
        if (cmd->check_name(given)) return;
        known += (known.empty() ? "" : ", ") + cmd->get_name();
    }
    throw CLI::ValidationError((given.empty() ? "no command given" : "unknown command '" + given + "'") + "; the commands are " + known);
}

}  // namespace

int main(int argc, char** argv) {
    retain_freed_memory();
    CLI::App app{"xgrad: reverse-mode autodiff and Batch Normalization experiments"};
    app.require_subcommand(1);

    TrainConfig config;
    std::string out;
    CLI::App* train_cmd = app.add_subcommand("train", "Train a model; writes config.json, metrics.csv, checkpoint.npz, summary.json into --out");
    add_train_flags(train_cmd, config);
    train_cmd->add_option("--out", out, "Run directory (resumed if it holds an unfinished run with the same configuration)")
        ->required()->check(path_of("the run directory"));

    std::string checkpoint, eval_dataset = "fashion-mnist";
    ModelConfig eval_model;
    CLI::App* eval_cmd = app.add_subcommand("eval", "Evaluate a checkpoint on a test set");
    eval_cmd->add_option("--checkpoint", checkpoint,
                         "checkpoint.npz of a run; the model is the one config.json beside it records, if there is one, "
                         "and the model flags below must agree with it")
        ->required()->check(CLI::ExistingFile);
    std::vector<CLI::Option*> eval_model_flags = add_norm_flags(eval_cmd, eval_model);
    eval_model_flags.push_back(add_model_flag(eval_cmd, eval_model.name));
    add_dataset_flag(eval_cmd, eval_dataset);
    std::size_t eval_samples = 0;
    add_eval_samples_option(eval_cmd, eval_samples, "Evaluate on the first N test images only, 0 for all");
    RecalibrateOptions recalibrate;
    auto* recalibrate_flag = eval_cmd->add_option("--recalibrate", recalibrate.batches,
        "PreciseBN: evaluate again with every BN layer's running statistics set to the averages of the means and "
        "unbiased variances of N training batches, the first N that `xgrad train` takes with --batch and --seed "
        "(from epoch 0 on, each epoch's incomplete last batch skipped); prints the test accuracy with the "
        "checkpoint's statistics, then with the recalibrated ones; the checkpoint file is not modified")
        ->check(in_range(recalibrate_batches, "the number of training batches"));
    eval_cmd->add_option("--batch", recalibrate.batch_size, "With --recalibrate: the run's batch size")
        ->check(in_range(train_range::batch))->capture_default_str()->needs(recalibrate_flag);
    eval_cmd->add_option("--seed", recalibrate.seed, "With --recalibrate: the run's seed, which orders the training set")
        ->check(in_range(train_range::seed))->capture_default_str()->needs(recalibrate_flag);

    SeedCnnBnOptions seed_cnn_bn;
    ExperimentOptions experiment_options;
    std::string experiment, profile = "quick";
    std::vector<std::string> experiment_names{"seed-cnn-bn", "all"};
    std::string experiment_help = "seed-cnn-bn: the seed CNN with and without BN on Fashion-MNIST (the main job)";
    for (const Driver& d : drivers()) {
        experiment_names.push_back(d.name);
        experiment_help += "\n" + d.name + ": " + d.description;
    }
    experiment_help += "\nall: every driver but seed-cnn-bn, in this order";
    CLI::App* experiment_cmd = app.add_subcommand("experiment", "Run an experiment driver");
    experiment_cmd->add_option("name", experiment, experiment_help)->required()->check(CLI::IsMember(experiment_names));
    add_experiment_options(experiment_cmd, experiment_options);
    experiment_cmd->add_option("--profile", profile, "quick (seconds, for tests) or paper (the reproduction)")
        ->check(CLI::IsMember({"quick", "paper"}))->capture_default_str();
    add_threads_option(experiment_cmd, seed_cnn_bn.threads,
                       "seed-cnn-bn: threads (TBB's; OpenBLAS runs single-threaded inside them); 1 a rank under mpirun");

    std::string sweep_spec;
    ExperimentOptions sweep_options;
    CLI::App* sweep_cmd = app.add_subcommand(
        "sweep", "Train the runs a spec file describes (a grid over train flags, seeds) and summarize them into "
                 "<results>/<name>/: summary.csv, summary.md, test_accuracy.png, spec.json (README, \"Experiments as spec files\")");
    sweep_cmd->add_option("spec", sweep_spec, "The spec file (JSON)")->required();
    add_experiment_options(sweep_cmd, sweep_options);

    std::string report_results = "results", report_out = "experiments/REPORT.md";
    CLI::App* report_cmd = app.add_subcommand("report", "Regenerate REPORT.md from the experiments' claims.json files");
    report_cmd->add_option("--results", report_results, "Root of the results directories")
        ->check(path_of("the results directory"))->capture_default_str();
    report_cmd->add_option("--out", report_out, "The report to write")->check(path_of("the report"))->capture_default_str();
    bool report_force = false;
    report_cmd->add_flag("--force", report_force, "Replace a report of more claims than the results give");

    std::string plot_dir;
    CLI::App* plot_cmd = app.add_subcommand("plot", "Plot a run directory's metrics.csv and activations.csv into PNGs beside them");
    plot_cmd->add_option("run_dir", plot_dir, "The run directory (--out of xgrad train)")->required()->check(CLI::ExistingDirectory);

    try {
        require_known_command(app, argc, argv);
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        return app.exit(e);
    }
    try {
        if (*train_cmd) return run_train(config, out);
        if (*eval_cmd) {
            return run_eval(checkpoint, model_to_evaluate(checkpoint, eval_model, eval_model_flags), eval_dataset, eval_samples, recalibrate);
        }
        if (*experiment_cmd) {
            experiment_options.profile = parse_profile(profile);
            spread_over_ranks(experiment_options, experiment_cmd);
            seed_cnn_bn.results = experiment_options.results;
            seed_cnn_bn.rerun_stale = experiment_options.rerun_stale;
            seed_cnn_bn.ranks = world();
            run_experiment(experiment, experiment_options, seed_cnn_bn);
            return 0;
        }
        if (*sweep_cmd) {
            const Sweep sweep = load_sweep(sweep_spec);
            spread_over_ranks(sweep_options, sweep_cmd);
            run_sweep(sweep, sweep_options, printed_by(sweep_options));
            return 0;
        }
        if (*plot_cmd) {
            for (const auto& png : plot_run(plot_dir)) std::cout << png.string() << "\n";
            return 0;
        }
        if (*report_cmd) {
            const std::size_t claims = write_report(report_results, report_out, report_force);
            std::cout << report_out << ": " << claims << " claims\n";
            return 0;
        }
    } catch (const std::exception& e) {
        Communicator& job = *world();
        if (job.size() == 1) {
            std::cerr << "xgrad: error: " << e.what() << "\n";
            return 1;
        }
        // The other ranks may wait in a collective this one will never join: end them all.
        // One write, so that mpirun does not interleave it with another rank's.
        std::cerr << "xgrad: error on " + job.describe() + ": " + e.what() + "\n" << std::flush;
        job.abort(1);
    }
    return 0;
}
