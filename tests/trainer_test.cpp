// The trainer and the xgrad CLI: run directories, never overwriting a finished run, refusing a
// directory of another configuration, resuming after a SIGKILL to the same final weights, the
// divergence report, the seed CNN's fc1 error, agreement with PyTorch on a checkpoint, the --norm
// flag with --bn as its other spelling, and `eval --recalibrate` (PreciseBN) against the library on
// the same batches, and its flag's errors.
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <limits>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "experiments/batch_loader.hpp"
#include "experiments/checkpoint.hpp"
#include "experiments/dataset.hpp"
#include "experiments/evaluation.hpp"
#include "experiments/models.hpp"
#include "experiments/npz.hpp"
#include "experiments/trainer.hpp"
#include "layers/normalization/precise_bn.hpp"
#include "tests/run_command.hpp"

extern char** environ;

namespace {

namespace fs = std::filesystem;
using xgrad::TrainConfig;
using xgrad_test::run_command;

fs::path fresh_dir(const std::string& name) {
    const fs::path dir = fs::temp_directory_path() / ("xgrad_trainer_test_" + name + "_" + std::to_string(getpid()));
    fs::remove_all(dir);
    return dir;
}

TrainConfig small_mlp_run() {
    TrainConfig c;
    c.model.name = "paper-mlp";
    c.dataset = "synthetic";
    c.synthetic_size = 512;
    c.optimizer = "sgd";
    c.lr = 0.1;
    c.momentum = 0.9;
    c.model.dropout = 0.2;  // so the resumed run must also restore the dropout generators
    c.batch = 32;
    c.steps = 60;
    c.eval_every = 10;
    return c;
}

std::vector<std::string> cli_args(const TrainConfig& c, const fs::path& out) {
    return {XGRAD_CLI,      "train",        "--model",       c.model.name,
            "--norm",       xgrad::norm_name(c.model.norm),
            "--dataset",    c.dataset,      "--synthetic-size", std::to_string(c.synthetic_size),
            "--optimizer",  c.optimizer,    "--lr",          std::to_string(c.lr),
            "--momentum",   std::to_string(c.momentum), "--dropout", std::to_string(c.model.dropout),
            "--batch",      std::to_string(c.batch),    "--steps",   std::to_string(c.steps),
            "--eval-every", std::to_string(c.eval_every), "--out",   out.string()};
}

pid_t spawn(const std::vector<std::string>& args) {
    std::vector<char*> argv;
    for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0);
    posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0);
    pid_t pid = 0;
    const int rc = posix_spawn(&pid, argv[0], &actions, nullptr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
    if (rc != 0) throw std::runtime_error("cannot start " + args[0]);
    return pid;
}

int wait_for(pid_t pid) {
    int status = 0;
    waitpid(pid, &status, 0);
    return status;
}

nlohmann::json read_json(const fs::path& p) {
    std::ifstream in(p);
    return nlohmann::json::parse(in);
}

// Every array bitwise equal, but for the wall-clock time the trainer keeps.
void expect_same_checkpoints(const fs::path& a, const fs::path& b) {
    const xgrad::Npz x = xgrad::load_npz(a);
    const xgrad::Npz y = xgrad::load_npz(b);
    ASSERT_EQ(x.entries().size(), y.entries().size());
    for (const auto& [key, value] : x.entries()) {
        if (key == "trainer/seconds") continue;
        const xgrad::NpyArray* other = y.find(key);
        ASSERT_NE(other, nullptr) << key;
        EXPECT_TRUE(value == *other) << key << " differs";
    }
}

TEST(Trainer, WritesTheRunFilesAndNeverOverwritesAFinishedRun) {
    const fs::path dir = fresh_dir("finished");
    const auto first = xgrad::train(small_mlp_run(), dir);
    EXPECT_EQ(first.status, "finished");
    EXPECT_FALSE(first.was_already_finished);
    for (const char* f : {"config.json", "metrics.csv", "summary.json", "checkpoint.npz"}) EXPECT_TRUE(fs::exists(dir / f)) << f;
    const auto summary = read_json(dir / "summary.json");
    EXPECT_GT(summary.at("final_test_acc").get<double>(), 0.5);
    const auto written = fs::last_write_time(dir / "checkpoint.npz");

    const auto again = xgrad::train(small_mlp_run(), dir);
    EXPECT_TRUE(again.was_already_finished);
    EXPECT_EQ(fs::last_write_time(dir / "checkpoint.npz"), written);
    fs::remove_all(dir);
}

TEST(Trainer, RefusesADirectoryOfAnotherConfiguration) {
    const fs::path dir = fresh_dir("other_config");
    TrainConfig c = small_mlp_run();
    c.steps = 10;
    fs::create_directories(dir);
    std::ofstream(dir / "config.json") << xgrad::to_json(c).dump();
    c.lr = 0.2;
    try {
        xgrad::train(c, dir);
        FAIL() << "a directory of another configuration was used";
    } catch (const std::runtime_error& e) {
        EXPECT_NE(std::string(e.what()).find("'lr'"), std::string::npos) << e.what();
    }
    fs::remove_all(dir);
}

TEST(Trainer, ResumesAfterSigkillToTheSameWeights) {
    TrainConfig c = small_mlp_run();
    c.steps = 600;
    const fs::path straight = fresh_dir("straight"), killed = fresh_dir("killed");
    ASSERT_EQ(xgrad::train(c, straight).status, "finished");

    const pid_t pid = spawn(cli_args(c, killed));
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
    while (!fs::exists(killed / "checkpoint.npz") && std::chrono::steady_clock::now() < deadline) {
        std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    kill(pid, SIGKILL);
    wait_for(pid);
    ASSERT_TRUE(fs::exists(killed / "checkpoint.npz"));
    ASSERT_FALSE(fs::exists(killed / "summary.json")) << "the run ended before it could be killed";

    ASSERT_EQ(wait_for(spawn(cli_args(c, killed))), 0);
    expect_same_checkpoints(straight / "checkpoint.npz", killed / "checkpoint.npz");
    EXPECT_EQ(read_json(straight / "summary.json").at("final_test_acc"), read_json(killed / "summary.json").at("final_test_acc"));
    fs::remove_all(straight);
    fs::remove_all(killed);
}

// No sum depends on the thread count: the channel reductions fix their order, and OpenBLAS runs
// single-threaded on parts of each product, every element's whole sum in one call.
TEST(Trainer, OneAndTwoThreadsTrainTheSeedCnnToTheSameBits) {
    TrainConfig c;
    c.dataset = "synthetic";
    c.synthetic_size = 256;
    c.steps = 4;
    c.eval_every = 4;
    std::vector<fs::path> dirs;
    for (std::size_t threads : {1, 2}) {
        c.threads = threads;
        dirs.push_back(fresh_dir("threads" + std::to_string(threads)));
        ASSERT_EQ(xgrad::train(c, dirs.back()).status, "finished");
    }
    expect_same_checkpoints(dirs[0] / "checkpoint.npz", dirs[1] / "checkpoint.npz");
    for (const auto& dir : dirs) fs::remove_all(dir);
}

TEST(Trainer, ADivergedRunNamesTheStepAndTheFirstNonFiniteLayer) {
    TrainConfig c = small_mlp_run();
    c.model.name = "seed-cnn";
    c.model.norm = xgrad::Norm::none;
    c.model.dropout = 0;
    c.optimizer = "sgd";
    c.lr = 1e6;  // far past any stable step
    c.steps = 50;
    c.divergence_loss = std::numeric_limits<double>::infinity();  // only a non-finite loss stops it
    const fs::path dir = fresh_dir("diverged");
    const auto outcome = xgrad::train(c, dir);
    ASSERT_EQ(outcome.status, "diverged");
    const auto& d = outcome.summary.at("divergence");
    EXPECT_GE(d.at("step").get<int>(), 1);
    EXPECT_EQ(d.at("loss"), "non-finite");
    // A layer of the model, named by its path and description, e.g. "conv2 (Conv2d(...))".
    const auto layer = d.at("first_nonfinite_layer").get<std::string>();
    EXPECT_NE(layer.find(" ("), std::string::npos) << layer;
    fs::remove_all(dir);
}

TEST(Cli, TheSeedCnnAsWrittenFailsNamingFc1AndBothSizes) {
    const fs::path dir = fresh_dir("verbatim");
    const std::string command = std::string(XGRAD_CLI) + " train --model seed-cnn-verbatim --dataset synthetic --steps 1 --out " +
                                dir.string() + " 2>" + (dir.string() + ".err");
    EXPECT_NE(std::system(command.c_str()), 0);
    std::ifstream err(dir.string() + ".err");
    const std::string message((std::istreambuf_iterator<char>(err)), std::istreambuf_iterator<char>());
    for (const char* part : {"fc1", "50176", "3136"}) EXPECT_NE(message.find(part), std::string::npos) << message;
    fs::remove_all(dir);
    fs::remove(dir.string() + ".err");
}

// What a command prints; an exception with it if the command fails.
std::string output_of(const std::string& command) {
    const auto [status, output] = run_command(command);
    if (status != 0) throw std::runtime_error(command + " failed:\n" + output);
    return output;
}

// The number after the first line of `output` that starts with `label` (e.g. "test accuracy: ").
double value_printed(const std::string& output, const std::string& label) {
    const auto at = ("\n" + output).find("\n" + label);
    if (at == std::string::npos) throw std::runtime_error("no line '" + label + "' in:\n" + output);
    return std::stod(output.substr(at + label.size()));
}

double accuracy_printed_by(const std::string& command) { return value_printed(output_of(command), "test accuracy: "); }

TEST(Cli, PyTorchEvaluatesAnXgradCheckpointToTheSameAccuracy) {
    if (std::system("/usr/bin/python3 -c 'import torch' 2>/dev/null") != 0) GTEST_SKIP() << "python3-torch is not installed";
    if (!fs::exists("/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz")) {
        GTEST_SKIP() << "dataset-fashion-mnist is not installed";
    }
    TrainConfig c;  // seed-cnn with BN on Fashion-MNIST, briefly
    c.steps = 30;
    c.eval_every = 30;
    c.eval_samples = 500;
    const fs::path dir = fresh_dir("torch_eval");
    ASSERT_EQ(xgrad::train(c, dir).status, "finished");
    const std::string checkpoint = (dir / "checkpoint.npz").string();
    const double ours = accuracy_printed_by(std::string(XGRAD_CLI) + " eval --model seed-cnn --dataset fashion-mnist --checkpoint " + checkpoint);
    const double torch = accuracy_printed_by("/usr/bin/python3 " XGRAD_SOURCE_DIR "/experiments/torch_eval.py --checkpoint " + checkpoint);
    EXPECT_GT(ours, 0.5);
    EXPECT_NEAR(ours, torch, 0.001) << "xgrad " << ours << ", PyTorch " << torch;
    fs::remove_all(dir);
}

// A two-step `xgrad train` of `model` on 64 synthetic images with `norm_flags`.
std::string tiny_train(const std::string& model, const std::string& norm_flags, const fs::path& out) {
    return std::string(XGRAD_CLI) + " train --model " + model +
           " --dataset synthetic --synthetic-size 64 --batch 16 --steps 2 --eval-every 2 --threads 1 " + norm_flags +
           " --out " + out.string();
}

TEST(Cli, NormOrBnChoosesTheNormalizationAndConfigJsonRecordsItAsNorm) {
    const std::pair<const char*, const char*> cases[] = {
        {"--norm batch", "batch"}, {"--norm none", "none"}, {"--bn on", "batch"},           {"--bn off", "none"},
        {"", "batch"},             {"--bn off --norm none", "none"}, {"--norm batch --bn on", "batch"}};
    for (const auto& [flags, norm] : cases) {
        SCOPED_TRACE(flags);
        const fs::path dir = fresh_dir("norm_flags");
        const auto [status, output] = run_command(tiny_train("paper-mlp", flags, dir));
        ASSERT_EQ(status, 0) << output;
        const auto config = read_json(dir / "config.json");
        EXPECT_EQ(config.at("norm"), norm);
        EXPECT_FALSE(config.contains("bn")) << "new runs record the choice once, as norm";
        EXPECT_EQ(xgrad::load_npz(dir / "checkpoint.npz").find("bn1.weight") != nullptr, std::string(norm) == "batch");
        fs::remove_all(dir);
    }
}

TEST(Cli, BnAndNormThatContradictEachOtherAreAnErrorNamingBoth) {
    const fs::path dir = fresh_dir("norm_conflict");
    for (const char* flags : {"--bn on --norm none", "--norm batch --bn off"}) {
        SCOPED_TRACE(flags);
        const auto [status, output] = run_command(tiny_train("paper-mlp", flags, dir));
        EXPECT_NE(status, 0);
        for (const char* part : {"--bn", "--norm", "contradict"}) EXPECT_NE(output.find(part), std::string::npos) << output;
        EXPECT_FALSE(fs::exists(dir)) << "nothing is trained";
    }
    const std::string eval = std::string(XGRAD_CLI) + " eval --bn off --norm batch --checkpoint " + XGRAD_CLI;
    const auto [status, output] = run_command(eval);
    EXPECT_NE(status, 0);
    EXPECT_NE(output.find("--bn off and --norm batch contradict"), std::string::npos) << output;
}

TEST(Cli, NoisyBnWithoutANormIsAnErrorThatLeavesNoRunDirectory) {
    const fs::path dir = fresh_dir("noisy_without_norm");
    const auto [status, output] = run_command(tiny_train("paper-mlp", "--norm none --noisy-bn", dir));
    EXPECT_NE(status, 0);
    EXPECT_NE(output.find("noisy BN adds noise after the norm layers, so it needs a normalization (--norm none given)"),
              std::string::npos) << output;
    EXPECT_FALSE(fs::exists(dir / "config.json")) << "the same directory can take the corrected command";
    fs::remove_all(dir);
}

TEST(Cli, AnUnknownNormOrBnValueIsAnErrorListingTheValidOnes) {
    const fs::path dir = fresh_dir("norm_unknown");
    const std::pair<const char*, std::vector<std::string>> cases[] = {{"--norm group", {"group", "batch", "none"}},
                                                                      {"--bn yes", {"yes", "on", "off"}}};
    for (const auto& [flags, parts] : cases) {
        SCOPED_TRACE(flags);
        const auto [status, output] = run_command(tiny_train("seed-cnn", flags, dir));
        EXPECT_NE(status, 0);
        for (const auto& part : parts) EXPECT_NE(output.find(part), std::string::npos) << output;
        EXPECT_FALSE(fs::exists(dir));
    }
}

// --bn on|off is only another spelling: the same model, trained to the same bits.
TEST(Cli, NormBatchOrNoneTrainsTheSameBitsAsBnOnOrOff) {
    for (const char* model : {"seed-cnn", "paper-mlp"}) {
        for (const auto& [norm, bn] : {std::pair{"batch", "on"}, std::pair{"none", "off"}}) {
            SCOPED_TRACE(std::string(model) + " --norm " + norm);
            const fs::path by_norm = fresh_dir("by_norm"), by_bn = fresh_dir("by_bn");
            ASSERT_EQ(run_command(tiny_train(model, std::string("--norm ") + norm, by_norm)).status, 0);
            ASSERT_EQ(run_command(tiny_train(model, std::string("--bn ") + bn, by_bn)).status, 0);
            expect_same_checkpoints(by_norm / "checkpoint.npz", by_bn / "checkpoint.npz");
            EXPECT_EQ(read_json(by_norm / "config.json"), read_json(by_bn / "config.json"));
            fs::remove_all(by_norm);
            fs::remove_all(by_bn);
        }
    }
}

std::string file_contents(const fs::path& path) {
    std::ifstream in(path, std::ios::binary);
    return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

// --recalibrate N: the accuracy and loss the command prints after recalibration are those of
// the checkpoint's model recalibrated here on the batches its help names (the first N of the
// loader for --batch and --seed, incomplete batches skipped: 4 batches of 600 of the 2,000
// training images are epoch 0's three and epoch 1's first); the checkpoint is not written.
TEST(Cli, EvalRecalibratesOnTheRunsTrainingBatchesAndLeavesTheCheckpointAlone) {
    TrainConfig c;  // the seed CNN with its three BN layers, briefly, on the synthetic data set
    c.dataset = "synthetic";
    c.batch = 32;
    c.steps = 20;
    c.eval_every = 20;
    const fs::path dir = fresh_dir("recalibrate");
    ASSERT_EQ(xgrad::train(c, dir).status, "finished");
    const fs::path checkpoint = dir / "checkpoint.npz";
    const std::string bytes = file_contents(checkpoint);
    const auto written = fs::last_write_time(checkpoint);

    const std::string output = output_of(std::string(XGRAD_CLI) + " eval --model seed-cnn --dataset synthetic --checkpoint " +
                                         checkpoint.string() + " --recalibrate 4 --batch 600 --seed 4");
    EXPECT_NE(output.find("recalibrated 3 BatchNorm layers over 4 training batches of 600 (seed 4)\n"), std::string::npos)
        << output;

    xgrad::Rng rng(0);
    auto model = xgrad::make_model(xgrad::ModelConfig{}, rng);  // seed-cnn with BN
    xgrad::load_checkpoint(checkpoint, *model);
    const xgrad::Dataset train_set = xgrad::load_dataset("synthetic", xgrad::Split::train);
    const xgrad::Dataset test_set = xgrad::load_dataset("synthetic", xgrad::Split::test);
    const xgrad::Evaluation before = xgrad::evaluate(*model, test_set, false);
    xgrad::BatchLoader loader(train_set, {.batch_size = 600, .seed = 4, .drop_last = true});
    ASSERT_EQ(xgrad::recalibrate_batch_norm<float>(*model, 4, [&loader](std::size_t) { return loader.next().images; }), 3u);
    const xgrad::Evaluation after = xgrad::evaluate(*model, test_set, false);

    EXPECT_NEAR(value_printed(output, "test accuracy: "), before.accuracy, 5e-5) << output;
    EXPECT_NEAR(value_printed(output, "test loss: "), before.loss, 5e-5) << output;
    EXPECT_NEAR(value_printed(output, "recalibrated test accuracy: "), after.accuracy, 5e-5) << output;
    EXPECT_NEAR(value_printed(output, "recalibrated test loss: "), after.loss, 5e-5) << output;
    EXPECT_GT(std::abs(after.loss - before.loss), 1e-3) << "recalibration changed nothing the loss shows";
    EXPECT_EQ(file_contents(checkpoint), bytes);
    EXPECT_EQ(fs::last_write_time(checkpoint), written);
    fs::remove_all(dir);
}

TEST(Cli, EvalRecalibrateTakesAtLeastOneBatch) {
    const std::string eval = std::string(XGRAD_CLI) + " eval --checkpoint " XGRAD_SOURCE_DIR "/README.md --dataset synthetic ";
    for (const char* n : {"0", "-2", "many"}) {
        const auto [status, message] = run_command(eval + "--recalibrate " + n);
        EXPECT_NE(status, 0);
        EXPECT_NE(message.find("--recalibrate: expected the number of training batches, a whole number >= 1; got " +
                               std::string(n)),
                  std::string::npos)
            << message;
    }
    const auto [status, message] = run_command(eval + "--batch 32");
    EXPECT_NE(status, 0);
    EXPECT_NE(message.find("--batch requires --recalibrate"), std::string::npos) << message;
}

}  // namespace
