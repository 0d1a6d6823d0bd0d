// The xgrad command line: train, eval, experiment, report.
#include <charconv>
#include <chrono>
#include <cstdint>
#include <iostream>
#include <memory>
#include <string>
#include <system_error>

#include <CLI/CLI.hpp>

#include "autodiff/memory.hpp"
#include "experiments/batch_loader.hpp"
#include "experiments/checkpoint.hpp"
#include "experiments/dataset.hpp"
#include "experiments/drivers.hpp"
#include "experiments/evaluation.hpp"
#include "experiments/models.hpp"
#include "experiments/report.hpp"
#include "experiments/seed_cnn_bn.hpp"
#include "experiments/trainer.hpp"
#include "layers/normalization/precise_bn.hpp"

namespace {

using namespace xgrad;

// --norm NAME, and --bn on|off as another spelling of --norm batch|none; given both, they must agree.
// The subcommand's callback, which runs once both are parsed, sets `target`.
void add_norm_flags(CLI::App* cmd, Norm& target) {
    struct Given {
        std::string norm, bn;  // as given on the command line; empty when absent
    };
    auto given = std::make_shared<Given>();
    cmd->add_option("--norm", given->norm, "Normalization layer after each hidden Linear and Conv2d (default batch)")
        ->check(CLI::IsMember(norm_names()));
    cmd->add_option("--bn", given->bn, "Batch Normalization layers: on or off (--norm batch or none)")
        ->check(CLI::IsMember({"on", "off"}));
    cmd->callback([given, &target] {
        if (!given->norm.empty()) target = parse_norm(given->norm);
        if (given->bn.empty()) return;
        const Norm bn = norm_from_bn(given->bn == "on");
        if (!given->norm.empty() && bn != target) {
            throw CLI::ValidationError("--bn " + given->bn + " and --norm " + given->norm +
                                       " contradict each other (--bn on|off is another spelling of --norm batch|none); give one of them");
        }
        target = bn;
    });
}

// A whole number >= 1, or an error saying so: "--recalibrate: expected the number of training
// batches, a whole number >= 1; got 0".
CLI::Validator at_least_one(const std::string& what) {
    return CLI::Validator(
        [what](const std::string& input) -> std::string {
            std::int64_t value = 0;
            const char* end = input.data() + input.size();
            const auto [stop, error] = std::from_chars(input.data(), end, value);
            if (error == std::errc{} && stop == end && value >= 1) return {};
            return "expected " + what + ", a whole number >= 1; got " + input;
        },
        "N >= 1");
}

CLI::Option* add_model_flag(CLI::App* cmd, std::string& target) {
    return cmd->add_option("--model", target, "Model")->check(CLI::IsMember(model_names()))->capture_default_str();
}

CLI::Option* add_dataset_flag(CLI::App* cmd, std::string& target) {
    return cmd->add_option("--dataset", target, "Data set")
        ->check(CLI::IsMember({"fashion-mnist", "mnist", "synthetic"}))
        ->capture_default_str();
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

int run_eval(const std::string& checkpoint, const ModelConfig& model_config, const std::string& dataset,
             const RecalibrateOptions& recalibrate) {
    Rng rng(0);
    auto model = make_model(model_config, rng);
    load_checkpoint(checkpoint, *model);
    const bool flat = model_takes_flat_input(model_config.name);
    const Dataset test = load_dataset(dataset, Split::test);
    const Evaluation e = evaluate(*model, test, flat);
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
    std::printf("recalibrated test accuracy: %.4f\nrecalibrated test loss: %.4f\n", r.accuracy, r.loss);
    return 0;
}

void run_experiment(const std::string& name, const ExperimentOptions& options, const SeedCnnBnOptions& seed_cnn_bn) {
    if (name == "seed-cnn-bn") return run_seed_cnn_bn(seed_cnn_bn, std::cout);
    for (const Driver& d : drivers()) {
        if (name != d.name && name != "all") continue;
        const auto start = std::chrono::steady_clock::now();
        std::cout << "== " << d.name << " (profile " << profile_name(options.profile) << ")\n";
        d.run(options, std::cout);
        std::cout << "== " << d.name << ": "
                  << std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() << " s\n";
    }
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
    add_norm_flags(train_cmd, config.model.norm);
    train_cmd->add_option("--optimizer", config.optimizer, "sgd or adam")->check(CLI::IsMember({"sgd", "adam"}))->capture_default_str();
    train_cmd->add_option("--lr", config.lr, "Learning rate")->capture_default_str();
    train_cmd->add_option("--momentum", config.momentum, "SGD momentum")->capture_default_str();
    train_cmd->add_option("--batch", config.batch, "Batch size")->check(CLI::PositiveNumber)->capture_default_str();
    auto* epochs = train_cmd->add_option("--epochs", config.epochs, "Epochs to train")->capture_default_str();
    train_cmd->add_option("--steps", config.steps, "Steps to train (instead of --epochs)")->excludes(epochs);
    train_cmd->add_option("--eval-every", config.eval_every, "Steps between evaluations (and checkpoints)")
        ->check(CLI::PositiveNumber)->capture_default_str();
    train_cmd->add_option("--eval-samples", config.eval_samples, "Test images per evaluation, 0 for all")->capture_default_str();
    train_cmd->add_option("--init-sigma", config.model.init_sigma, "Initialize weights from N(0, sigma) instead of torch's default");
    train_cmd->add_option("--dropout", config.model.dropout, "Dropout probability after hidden nonlinearities")->capture_default_str();
    train_cmd->add_flag("--noisy-bn", config.model.noisy_bn, "Noise after every norm layer (Santurkar et al. 2018)");
    train_cmd->add_option("--synthetic-size", config.synthetic_size, "Training images of the synthetic data set")->capture_default_str();
    train_cmd->add_option("--seed", config.seed, "Seed of initialization, data order and dropout")->capture_default_str();
    train_cmd->add_option("--threads", config.threads, "Threads (TBB's; OpenBLAS runs single-threaded inside them)")->check(CLI::PositiveNumber)->capture_default_str();
    train_cmd->add_option("--out", out, "Run directory (resumed if it holds an unfinished run with the same configuration)")->required();

    std::string checkpoint, eval_dataset = "fashion-mnist";
    ModelConfig eval_model;
    CLI::App* eval_cmd = app.add_subcommand("eval", "Evaluate a checkpoint on a test set");
    eval_cmd->add_option("--checkpoint", checkpoint, "checkpoint.npz of a run")->required()->check(CLI::ExistingFile);
    add_model_flag(eval_cmd, eval_model.name);
    add_dataset_flag(eval_cmd, eval_dataset);
    add_norm_flags(eval_cmd, eval_model.norm);
    RecalibrateOptions recalibrate;
    auto* recalibrate_flag = eval_cmd->add_option("--recalibrate", recalibrate.batches,
        "PreciseBN: evaluate again with every BN layer's running statistics set to the averages of the means and "
        "unbiased variances of N training batches, the first N that `xgrad train` takes with --batch and --seed "
        "(from epoch 0 on, each epoch's incomplete last batch skipped); prints the test accuracy with the "
        "checkpoint's statistics, then with the recalibrated ones; the checkpoint file is not modified")
        ->check(at_least_one("the number of training batches"));
    eval_cmd->add_option("--batch", recalibrate.batch_size, "With --recalibrate: the run's batch size")
        ->check(CLI::PositiveNumber)->capture_default_str()->needs(recalibrate_flag);
    eval_cmd->add_option("--seed", recalibrate.seed, "With --recalibrate: the run's seed, which orders the training set")
        ->capture_default_str()->needs(recalibrate_flag);

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
    experiment_cmd->add_option("--results", experiment_options.results, "Root of the results directories")->capture_default_str();
    experiment_cmd->add_option("--profile", profile, "quick (seconds, for tests) or paper (the reproduction)")
        ->check(CLI::IsMember({"quick", "paper"}))->capture_default_str();
    experiment_cmd->add_option("--jobs", experiment_options.jobs, "Runs trained at once, one thread each")
        ->check(CLI::PositiveNumber)->capture_default_str();
    experiment_cmd->add_option("--threads", seed_cnn_bn.threads, "seed-cnn-bn: threads (TBB's; OpenBLAS runs single-threaded inside them)")->capture_default_str();

    std::string report_results = "results", report_out = "experiments/REPORT.md";
    CLI::App* report_cmd = app.add_subcommand("report", "Regenerate REPORT.md from the experiments' claims.json files");
    report_cmd->add_option("--results", report_results, "Root of the results directories")->capture_default_str();
    report_cmd->add_option("--out", report_out, "The report to write")->capture_default_str();

    CLI11_PARSE(app, argc, argv);
    try {
        if (*train_cmd) return run_train(config, out);
        if (*eval_cmd) return run_eval(checkpoint, eval_model, eval_dataset, recalibrate);
        if (*experiment_cmd) {
            experiment_options.profile = parse_profile(profile);
            seed_cnn_bn.results = experiment_options.results;
            run_experiment(experiment, experiment_options, seed_cnn_bn);
            return 0;
        }
        if (*report_cmd) {
            const std::size_t claims = write_report(report_results, report_out);
            std::cout << report_out << ": " << claims << " claims\n";
            return 0;
        }
    } catch (const std::exception& e) {
        std::cerr << "xgrad: error: " << e.what() << "\n";
        return 1;
    }
    return 0;
}
