// The xgrad command line: train, eval, experiment, report, plot.
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <iostream>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <CLI/CLI.hpp>

#include "autodiff/memory.hpp"
#include "experiments/batch_loader.hpp"
#include "experiments/checkpoint.hpp"
#include "experiments/dataset.hpp"
#include "experiments/drivers.hpp"
#include "experiments/evaluation.hpp"
#include "experiments/json_file.hpp"
#include "experiments/models.hpp"
#include "experiments/report.hpp"
#include "experiments/run_plots.hpp"
#include "experiments/seed_cnn_bn.hpp"
#include "experiments/trainer.hpp"
#include "layers/distributed/communicator.hpp"
#include "layers/normalization/precise_bn.hpp"

namespace {

using namespace xgrad;

// A flag's text against its range, before conversion, since an unsigned option would take -2 as
// 2^64 - 2: "--recalibrate: expected the number of training batches, a whole number from 1 to
// 1000000; got 0" (`what` names the value; may be empty). CLI11 prefixes the flag's name.
template <class Range>
CLI::Validator in_range(const Range& range, const std::string& what = "") {
    return CLI::Validator(
        [range, what](const std::string& input) -> std::string {
            if (range.admits(input)) return {};
            // CLI11 takes the argument after a flag as its value even when it is the next flag.
            const std::string given = input.starts_with("--") ? input + ", the next flag (the value is missing)" : input;
            return "expected " + (what.empty() ? "" : what + ", ") + range.words() + "; got " + given;
        },
        range.words());
}

// A file or directory: an empty path would put the files into the working directory.
CLI::Validator path_of(const std::string& what) {
    return CLI::Validator(
        [what](const std::string& input) -> std::string {
            return input.empty() ? "expected the path of " + what + "; got an empty one" : "";
        },
        "PATH");
}

// --threads, the same check for every command that takes it: TBB aborts on a limit of 0.
CLI::Option* add_threads_option(CLI::App* cmd, std::size_t& threads, const std::string& help) {
    return cmd->add_option("--threads", threads, help)
        ->check(in_range(train_range::threads, "the number of threads"))
        ->capture_default_str();
}

// The normalization flags: --norm NAME; --bn on|off, another spelling of --norm batch|none (given
// both, they must agree); and the settings of the norms that have them, each an error naming both
// with another norm. Their ranges (model_config.hpp's) are checked here before conversion, and
// again by make_model (check_norm_settings) with what depends on the other flags. The
// subcommand's callback, which runs once all are parsed, sets model.norm. Returns the options,
// for eval's check against a run.
std::vector<CLI::Option*> add_norm_flags(CLI::App* cmd, ModelConfig& model) {
    struct Given {
        std::string norm, bn;  // as given on the command line; empty when absent
    };
    auto given = std::make_shared<Given>();
    std::vector<CLI::Option*> options{
        cmd->add_option("--norm", given->norm,
                        "Normalization layer after each hidden Linear and Conv2d (default batch); instance and frn "
                        "normalize over spatial positions, so the seed CNN has none after fc1 with them and "
                        "paper-mlp refuses them")
            ->check(CLI::IsMember(norm_names())),
        cmd->add_option("--bn", given->bn, "Batch Normalization layers: on or off (--norm batch or none)")
            ->check(CLI::IsMember({"on", "off"}))};
    const auto with_default = [cmd](const std::string& flag, auto& target, const std::string& help) {
        return cmd->add_option(flag, target, help)->capture_default_str();
    };
    const std::vector<std::pair<CLI::Option*, Norm>> settings{
        {with_default("--norm-groups", model.norm_groups, "group: the groups of every GroupNorm layer; must divide each layer's channels")
             ->check(in_range(model_range::norm_groups)),
         Norm::group},
        {cmd->add_option("--ghost-batch", model.ghost_batch, "ghost (required): the samples of each virtual batch, below --batch")
             ->check(in_range(model_range::ghost_batch)),
         Norm::ghost},
        {with_default("--renorm-rmax", model.renorm.rmax, "batch-renorm: rmax's final value (>= 1)")
             ->check(in_range(model_range::renorm_rmax)),
         Norm::batch_renorm},
        {with_default("--renorm-dmax", model.renorm.dmax, "batch-renorm: dmax's final value (>= 0)")
             ->check(in_range(model_range::renorm_dmax)),
         Norm::batch_renorm},
        {with_default("--renorm-warmup", model.renorm.warmup,
                      "batch-renorm: the steps with rmax = 1 and dmax = 0 (BatchNorm) before both rise linearly"),
         Norm::batch_renorm},
        {with_default("--renorm-rmax-at", model.renorm.rmax_at, "batch-renorm: the step at which rmax reaches its final value"),
         Norm::batch_renorm},
        {with_default("--renorm-dmax-at", model.renorm.dmax_at, "batch-renorm: the step at which dmax reaches its final value"),
         Norm::batch_renorm},
        {with_default("--renorm-momentum", model.renorm.momentum, "batch-renorm: the momentum of the running statistics, in (0, 1]")
             ->check(in_range(model_range::renorm_momentum)),
         Norm::batch_renorm}};
    for (const auto& setting : settings) options.push_back(setting.first);
    cmd->callback([given, settings, &model] {
        if (!given->norm.empty()) model.norm = parse_norm(given->norm);
        if (!given->bn.empty()) {
            const Norm bn = norm_from_bn(given->bn == "on");
            if (!given->norm.empty() && bn != model.norm) {
                throw CLI::ValidationError("--bn " + given->bn + " and --norm " + given->norm +
                                           " contradict each other (--bn on|off is another spelling of --norm batch|none); give one of them");
            }
            model.norm = bn;
        }
        for (const auto& [option, norm] : settings) {
            if (option->count() > 0 && norm != model.norm) {
                throw CLI::ValidationError(option->get_name() + " applies to --norm " + norm_name(norm) + " only, not to --norm " +
                                           norm_name(model.norm));
            }
        }
    });
    return options;
}

CLI::Option* add_model_flag(CLI::App* cmd, std::string& target) {
    return cmd->add_option("--model", target, "Model")->check(CLI::IsMember(model_names()))->capture_default_str();
}

CLI::Option* add_dataset_flag(CLI::App* cmd, std::string& target) {
    return cmd->add_option("--dataset", target, "Data set")
        ->check(CLI::IsMember({"fashion-mnist", "mnist", "synthetic"}))
        ->capture_default_str();
}

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

int run_eval(const std::string& checkpoint, const ModelConfig& model_config, const std::string& dataset,
             const RecalibrateOptions& recalibrate) {
    Rng rng(0);
    auto model = make_model(model_config, rng);
    load_checkpoint(checkpoint, *model);
    const bool flat = model_takes_flat_input(model_config.name);
    const Dataset test = load_dataset(dataset, Split::test);
    const Evaluation e = evaluate(*model, test, flat);
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
    const Evaluation r = evaluate(*model, test, flat);
    if (r.nonfinite) throw std::runtime_error(checkpoint + ", recalibrated: " + *r.nonfinite);
    std::printf("recalibrated test accuracy: %.4f\nrecalibrated test loss: %.4f\n", r.accuracy, r.loss);
    return 0;
}

// Under mpirun every rank runs the drivers (each trains its share of the runs); rank 0 alone prints.
void run_experiment(const std::string& name, const ExperimentOptions& options, const SeedCnnBnOptions& seed_cnn_bn) {
    std::ostream silent(nullptr);
    std::ostream& out = options.writes_report() ? std::cout : silent;
    if (name == "seed-cnn-bn") return run_seed_cnn_bn(seed_cnn_bn, out);
    for (const Driver& d : drivers()) {
        if (name != d.name && name != "all") continue;
        const auto start = std::chrono::steady_clock::now();
        out << "== " << d.name << " (profile " << profile_name(options.profile) << ")\n";
        d.run(options, out);
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
    add_model_flag(train_cmd, config.model.name);
    add_dataset_flag(train_cmd, config.dataset);
    add_norm_flags(train_cmd, config.model);
    train_cmd->add_option("--optimizer", config.optimizer, "sgd or adam")->check(CLI::IsMember({"sgd", "adam"}))->capture_default_str();
    train_cmd->add_option("--lr", config.lr, "Learning rate")->check(in_range(train_range::lr))->capture_default_str();
    train_cmd->add_option("--momentum", config.momentum, "SGD momentum (--optimizer sgd only)")
        ->check(in_range(train_range::momentum))->capture_default_str();
    train_cmd->add_option("--batch", config.batch, "Batch size")->check(in_range(train_range::batch))->capture_default_str();
    auto* epochs = train_cmd->add_option("--epochs", config.epochs, "Epochs to train")
        ->check(in_range(train_range::epochs))->capture_default_str();
    train_cmd->add_option("--steps", config.steps, "Steps to train (instead of --epochs)")
        ->check(in_range(train_range::steps))->excludes(epochs);
    train_cmd->add_option("--eval-every", config.eval_every, "Steps between evaluations (and checkpoints)")
        ->check(in_range(train_range::eval_every))->capture_default_str();
    train_cmd->add_option("--eval-samples", config.eval_samples, "Test images per evaluation, 0 for all")
        ->check(in_range(train_range::eval_samples))->capture_default_str();
    train_cmd->add_option("--init-sigma", config.model.init_sigma, "Initialize weights from N(0, sigma) instead of torch's default")
        ->check(in_range(model_range::init_sigma));
    train_cmd->add_option("--dropout", config.model.dropout, "Dropout probability after hidden nonlinearities")
        ->check(in_range(model_range::dropout))->capture_default_str();
    train_cmd->add_flag("--noisy-bn", config.model.noisy_bn, "Noise after every norm layer (Santurkar et al. 2018)");
    train_cmd->add_flag("--sync-bn", config.model.sync_bn,
                        "batch: SyncBatchNorm, statistics over every rank's batch under mpirun (without it, each rank's own)");
    train_cmd->add_option("--synthetic-size", config.synthetic_size, "Training images of the synthetic data set")
        ->check(in_range(train_range::synthetic_size))->capture_default_str();
    train_cmd->add_option("--seed", config.seed, "Seed of initialization, data order and dropout")
        ->check(in_range(train_range::seed))->capture_default_str();
    add_threads_option(train_cmd, config.threads, "Threads (TBB's; OpenBLAS runs single-threaded inside them)");
    train_cmd->add_option("--record-activations", config.record_activations,
                          "Layers (dotted paths, e.g. bn1,sigmoid2) whose activations each evaluation summarizes into "
                          "activations.csv: mean, std, p15, p50, p85 and, for a sigmoid or tanh, the fraction of "
                          "|x| > 3, over the first 1000 test images in eval mode; a nonlinearity's input, any other "
                          "layer's output. A resumed run must give the same list")
        ->delimiter(',');
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
    experiment_cmd->add_option("--results", experiment_options.results, "Root of the results directories")
        ->check(path_of("the results directory"))->capture_default_str();
    experiment_cmd->add_option("--profile", profile, "quick (seconds, for tests) or paper (the reproduction)")
        ->check(CLI::IsMember({"quick", "paper"}))->capture_default_str();
    experiment_cmd->add_option("--jobs", experiment_options.jobs, "Runs trained at once, one thread each (by each rank under mpirun; there 1 unless given)")
        ->check(in_range(experiment_range::jobs, "the number of runs trained at once"))->capture_default_str();
    add_threads_option(experiment_cmd, seed_cnn_bn.threads,
                       "seed-cnn-bn: threads (TBB's; OpenBLAS runs single-threaded inside them); 1 a rank under mpirun");

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
            return run_eval(checkpoint, model_to_evaluate(checkpoint, eval_model, eval_model_flags), eval_dataset, recalibrate);
        }
        if (*experiment_cmd) {
            experiment_options.profile = parse_profile(profile);
            experiment_options.ranks = world();
            // A rank per core: each trains one run at a time unless told otherwise.
            if (world()->size() > 1 && experiment_cmd->count("--jobs") == 0) experiment_options.jobs = 1;
            seed_cnn_bn.results = experiment_options.results;
            seed_cnn_bn.ranks = world();
            run_experiment(experiment, experiment_options, seed_cnn_bn);
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
