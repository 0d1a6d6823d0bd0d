#include "experiments/train_flags.hpp"

#include <optional>
#include <string>
#include <utility>

#include "experiments/model_spec.hpp"
#include "experiments/models.hpp"

namespace xgrad {

CLI::Validator path_of(const std::string& what) {
    return CLI::Validator(
        [what](const std::string& input) -> std::string {
            return input.empty() ? "expected the path of " + what + "; got an empty one" : "";
        },
        "PATH");
}

CLI::Option* add_threads_option(CLI::App* cmd, std::size_t& threads, const std::string& help) {
    return cmd->add_option("--threads", threads, help)
        ->check(in_range(train_range::threads, "the number of threads"))
        ->capture_default_str();
}

CLI::Option* add_eval_samples_option(CLI::App* cmd, std::size_t& samples, const std::string& help) {
    return cmd->add_option("--eval-samples", samples, help)->check(in_range(train_range::eval_samples))->capture_default_str();
}

namespace {

// --bn-momentum's text: a number in model_range::bn_momentum, or cumulative_momentum.
CLI::Validator bn_momentum_text() {
    const std::string words = model_range::bn_momentum.words() + " or " + cumulative_momentum;
    return CLI::Validator(
        [words](const std::string& input) -> std::string {
            if (input == cumulative_momentum || model_range::bn_momentum.admits(input)) return {};
            return "expected " + words + "; got " + input;
        },
        words);
}

}  // namespace

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
        {cmd->add_option_function<std::string>(
                 "--bn-momentum",
                 [&model](const std::string& text) {
                     model.bn_momentum = text == cumulative_momentum ? std::nullopt : std::optional<double>(std::stod(text));
                 },
                 "batch: the factor the running statistics move by at each batch (default 0.1, torch's), or cumulative "
                 "for their average over every batch")
             ->check(bn_momentum_text()),
         Norm::batch},
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

void add_train_flags(CLI::App* train_cmd, TrainConfig& config) {
    CLI::Option* model = add_model_flag(train_cmd, config.model.name);
    // The spec is read and checked as the flag is parsed, so that its errors are the command line's.
    train_cmd
        ->add_option_function<std::string>(
            "--model-spec",
            [&config](const std::string& file) {
                try {
                    use_model_spec(config.model, file);
                } catch (const std::exception& e) {
                    throw CLI::ValidationError(e.what());
                }
            },
            "A model as a JSON list of layers, in place of --model (README: Models as spec files)")
        ->check(path_of("the model's spec file"))
        ->excludes(model);
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
    add_eval_samples_option(train_cmd, config.eval_samples, "Test images per evaluation, 0 for all");
    train_cmd->add_option("--init-sigma", config.model.init_sigma, "Initialize weights from N(0, sigma) instead of torch's default")
        ->check(in_range(model_range::init_sigma));
    train_cmd->add_option("--dropout", config.model.dropout, "Dropout probability after hidden nonlinearities")
        ->check(in_range(model_range::dropout))->capture_default_str();
    train_cmd->add_flag("--noisy-bn", config.model.noisy_bn, "Noise after every norm layer (Santurkar et al. 2018)");
    train_cmd->add_flag("--sync-bn", config.model.sync_bn,
                        "batch: SyncBatchNorm, statistics over every rank's batch under mpirun (without it, each rank's own)");
    train_cmd->add_option("--train-subset", config.train_subset,
                          "Train on the first N images of the training set only, 0 for all (the test set stays whole)")
        ->check(in_range(train_range::train_subset))->capture_default_str();
    train_cmd->add_option("--synthetic-size", config.synthetic_size, "Training images of the synthetic data set")
        ->check(in_range(train_range::synthetic_size))->capture_default_str();
    train_cmd->add_option("--seed", config.seed, "Seed of initialization, data order and dropout")
        ->check(in_range(train_range::seed))->capture_default_str();
    add_threads_option(train_cmd, config.threads, "Threads (TBB's; OpenBLAS runs single-threaded inside them)");
    train_cmd->add_option("--conv-backend", config.conv_backend,
                          "Conv2d's convolutions: own (im2col and sgemm; bits independent of --threads) or onednn "
                          "(oneDNN's direct convolutions, faster; rounding differs, and may depend on --threads)")
        ->check(CLI::IsMember({"own", "onednn"}))->capture_default_str();
    train_cmd->add_option("--record-activations", config.record_activations,
                          "Layers (dotted paths, e.g. bn1,sigmoid2) whose activations each evaluation summarizes into "
                          "activations.csv: mean, std, p15, p50, p85 and, for a sigmoid or tanh, the fraction of "
                          "|x| > 3, over the first 1000 test images in eval mode; a nonlinearity's input, any other "
                          "layer's output. A resumed run must give the same list")
        ->delimiter(',');
}

TrainConfig parse_train_flags(const std::vector<std::string>& args) {
    TrainConfig config;
    CLI::App app;
    add_train_flags(&app, config);
    // CLI11 takes the arguments last first.
    std::vector<std::string> reversed(args.rbegin(), args.rend());
    app.parse(reversed);
    return config;
}

}  // namespace xgrad
