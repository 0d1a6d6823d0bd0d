// The trainer and the xgrad CLI: run directories, never overwriting a finished run, refusing a
// directory of another configuration, resuming after a SIGKILL to the same final weights (Batch
// Renorm's step counter included), the divergence report, the seed CNN's fc1 error, agreement with
// PyTorch on a checkpoint of each norm, the --norm flag with --bn as its other spelling, every
// norm trained through the command line, the norm settings' errors and their record in
// config.json, the build, threads and ranks config.json and summary.json record, --conv-backend,
// eval's model from config.json, and `eval --recalibrate` (PreciseBN) against the library on the
// same batches, and its flag's errors; --record-activations (activations.csv against the
// statistics computed layer by layer, the same weights as without it, resumed to the same file,
// its errors) and `xgrad plot`.
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <string>
#include <thread>
#include <utility>
#include <variant>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "autodiff/grad_mode.hpp"
#include "experiments/activations_log.hpp"
#include "experiments/batch_loader.hpp"
#include "experiments/checkpoint.hpp"
#include "experiments/dataset.hpp"
#include "experiments/evaluation.hpp"
#include "experiments/metrics_log.hpp"
#include "experiments/models.hpp"
#include "experiments/npz.hpp"
#include "experiments/provenance.hpp"
#include "experiments/regular_file.hpp"
#include "experiments/trainer.hpp"
#include "layers/conv_backend.hpp"
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

// The command line of `c`; its norm's settings as the flags named by their config.json keys.
std::vector<std::string> cli_args(const TrainConfig& c, const fs::path& out) {
    std::vector<std::string> args{XGRAD_CLI,      "train",        "--model",       c.model.name,
                                  "--norm",       xgrad::norm_name(c.model.norm),
                                  "--dataset",    c.dataset,      "--synthetic-size", std::to_string(c.synthetic_size),
                                  "--optimizer",  c.optimizer,    "--lr",          std::to_string(c.lr),
                                  "--momentum",   std::to_string(c.momentum), "--dropout", std::to_string(c.model.dropout),
                                  "--batch",      std::to_string(c.batch),    "--steps",   std::to_string(c.steps),
                                  "--eval-every", std::to_string(c.eval_every), "--out",   out.string()};
    const nlohmann::json model = xgrad::to_json(c.model);
    for (const auto& [key, value] : model.items()) {
        if (key != "norm_groups" && key != "ghost_batch" && key.rfind("renorm_", 0) != 0) continue;
        std::string flag = "--" + key;
        std::replace(flag.begin(), flag.end(), '_', '-');
        args.insert(args.end(), {flag, value.dump()});
    }
    std::string layers;
    for (const auto& layer : c.record_activations) layers += (layers.empty() ? "" : ",") + layer;
    if (!layers.empty()) args.insert(args.end(), {"--record-activations", layers});
    return args;
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

// The value of the int64 counter `key` (num_batches_tracked) in a checkpoint.
std::int64_t counter_in(const fs::path& checkpoint, const std::string& key) {
    const xgrad::Npz npz = xgrad::load_npz(checkpoint);
    const auto* value = std::get_if<xt::xarray<std::int64_t>>(npz.find(key));
    if (!value) throw std::runtime_error(checkpoint.string() + " has no int64 '" + key + "'");
    return (*value)();
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

// What `git` says of the checkout the tests were built from: its HEAD and whether tracked files
// differ from it; "unknown" and false outside a checkout.
std::pair<std::string, bool> checkout_commit() {
    const std::string git = "git -C '" + std::string(XGRAD_SOURCE_DIR) + "' ";
    if (!fs::exists(fs::path(XGRAD_SOURCE_DIR) / ".git")) return {"unknown", false};
    std::string head = run_command(git + "rev-parse HEAD").output;
    head.erase(head.find_last_not_of('\n') + 1);
    return {head, !run_command(git + "status --porcelain --untracked-files=no").output.empty()};
}

// config.json records the build that started a run and summary.json the one that ended it: the
// version, the commit of this checkout, the compiler, the BLAS, the run's threads and ranks. A
// run started by another build resumes under this one, and its config.json keeps the other.
TEST(Trainer, RecordsTheBuildAndTheRunsThreadsAndResumesUnderAnotherBuild) {
    const fs::path dir = fresh_dir("provenance");
    TrainConfig c = small_mlp_run();
    c.steps = 20;
    c.threads = 1;
    xgrad::train(c, dir);
    const auto [commit, dirty] = checkout_commit();
    for (const char* file : {"config.json", "summary.json"}) {
        SCOPED_TRACE(file);
        const nlohmann::json p = read_json(dir / file).at("provenance");
        EXPECT_EQ(p.at("commit"), commit);
        EXPECT_EQ(p.at("dirty"), dirty);
        EXPECT_EQ(xgrad::build_of(read_json(dir / file)), xgrad::this_build());
        EXPECT_EQ(p.at("xgrad_version"), XGRAD_VERSION);
        EXPECT_EQ(p.at("threads"), 1);
        EXPECT_EQ(p.at("world_size"), 1);
        for (const auto* key : {"/compiler", "/blas/config", "/blas/kernels"}) {
            EXPECT_FALSE(p.at(nlohmann::json::json_pointer(key)).get<std::string>().empty()) << key;
        }
    }
    EXPECT_EQ(xgrad::this_build(), commit + (dirty ? "-dirty" : ""));

    fs::remove(dir / "summary.json");  // as if stopped after its last checkpoint
    nlohmann::json config = read_json(dir / "config.json");
    config["provenance"]["commit"] = std::string(40, 'a');
    config["provenance"]["dirty"] = false;
    config["provenance"]["threads"] = 2;
    std::ofstream(dir / "config.json") << config.dump();
    EXPECT_EQ(xgrad::train(c, dir).status, "finished");
    EXPECT_EQ(xgrad::build_of(read_json(dir / "config.json")), std::string(40, 'a'));
    EXPECT_EQ(xgrad::build_of(read_json(dir / "summary.json")), xgrad::this_build());
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

// Trains `c` straight through in the library and, through the command line, killed at its first
// checkpoint and run again; both end with the same checkpoint and accuracy. Returns the killed
// run's directory, for the caller to look into and remove.
fs::path expect_resume_after_sigkill_matches(const TrainConfig& c, const std::string& name) {
    const fs::path straight = fresh_dir(name + "_straight"), killed = fresh_dir(name + "_killed");
    EXPECT_EQ(xgrad::train(c, straight).status, "finished");

    const pid_t pid = spawn(cli_args(c, killed));
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
    while (!fs::exists(killed / "checkpoint.npz") && std::chrono::steady_clock::now() < deadline) {
        std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    kill(pid, SIGKILL);
    wait_for(pid);
    EXPECT_TRUE(fs::exists(killed / "checkpoint.npz"));
    EXPECT_FALSE(fs::exists(killed / "summary.json")) << "the run ended before it could be killed";

    EXPECT_EQ(wait_for(spawn(cli_args(c, killed))), 0);
    expect_same_checkpoints(straight / "checkpoint.npz", killed / "checkpoint.npz");
    EXPECT_EQ(read_json(straight / "summary.json").at("final_test_acc"), read_json(killed / "summary.json").at("final_test_acc"));
    if (!c.record_activations.empty()) {
        EXPECT_EQ(xgrad::read_regular_file(straight / "activations.csv"), xgrad::read_regular_file(killed / "activations.csv"));
    }
    fs::remove_all(straight);
    return killed;
}

TEST(Trainer, ResumesAfterSigkillToTheSameWeights) {
    TrainConfig c = small_mlp_run();
    c.steps = 600;
    fs::remove_all(expect_resume_after_sigkill_matches(c, "bn"));
}

// activations.csv too: the resumed run drops the rows written after its checkpoint and ends with
// the uninterrupted run's bytes.
TEST(Trainer, ResumesAfterSigkillToTheSameActivationsCsv) {
    TrainConfig c = small_mlp_run();
    c.steps = 600;
    c.record_activations = {"sigmoid1", "bn3"};
    fs::remove_all(expect_resume_after_sigkill_matches(c, "activations"));
}

// numpy's percentile of sorted values.
double sorted_percentile(const std::vector<float>& sorted, double q) {
    const double position = q * static_cast<double>(sorted.size() - 1);
    const auto lo = static_cast<std::size_t>(position);
    const std::size_t hi = std::min(lo + 1, sorted.size() - 1);
    return sorted[lo] + (position - static_cast<double>(lo)) * (sorted[hi] - sorted[lo]);
}

// Recording changes no weight and no metric, and each row is the statistics of the tensor the
// layers give when run one at a time by hand on the first test images: sigmoid2's input (bn2's
// output), bn1's and fc4's outputs.
TEST(Trainer, RecordedActivationsAreTheLayersStatisticsAndChangeNothingElse) {
    TrainConfig c = small_mlp_run();
    c.steps = 20;
    const fs::path plain = fresh_dir("activations_plain"), recorded = fresh_dir("activations_recorded");
    ASSERT_EQ(xgrad::train(c, plain).status, "finished");
    c.record_activations = {"bn1", "sigmoid2", "fc4"};
    ASSERT_EQ(xgrad::train(c, recorded).status, "finished");
    expect_same_checkpoints(plain / "checkpoint.npz", recorded / "checkpoint.npz");
    const auto a = xgrad::read_metrics_csv(plain / "metrics.csv"), b = xgrad::read_metrics_csv(recorded / "metrics.csv");
    ASSERT_EQ(a.size(), b.size());
    for (std::size_t i = 0; i < a.size(); ++i) {
        EXPECT_EQ(a[i].train_loss, b[i].train_loss);
        EXPECT_EQ(a[i].train_acc, b[i].train_acc);
        EXPECT_EQ(a[i].test_loss, b[i].test_loss);
        EXPECT_EQ(a[i].test_acc, b[i].test_acc);
    }
    EXPECT_FALSE(fs::exists(plain / "activations.csv"));
    EXPECT_EQ(read_json(recorded / "config.json").at("record_activations"), nlohmann::json({"bn1", "sigmoid2", "fc4"}));

    const auto rows = xgrad::read_activations_csv(recorded / "activations.csv");
    ASSERT_EQ(rows.size(), 6u);  // two evaluations, three layers
    for (std::size_t i = 0; i < rows.size(); ++i) {
        EXPECT_EQ(rows[i].step, i < 3 ? 10u : 20u);
        EXPECT_EQ(rows[i].layer, c.record_activations[i % 3]);
        EXPECT_EQ(rows[i].saturated.has_value(), rows[i].layer == "sigmoid2");
    }

    xgrad::Rng rng(0);
    auto model = xgrad::make_model(c.model, rng);
    xgrad::load_checkpoint(recorded / "checkpoint.npz", *model);
    model->eval();
    const xgrad::Dataset test = xgrad::load_dataset("synthetic", xgrad::Split::test, {.synthetic_size = 128, .synthetic_seed = c.seed});
    const std::size_t n = test.labels.size();
    xt::xarray<float> x = test.images;
    x.reshape({n, x.size() / n});
    std::map<std::string, std::vector<float>> tensors;
    {
        xgrad::NoGrad no_grad;
        xgrad::Var<float> v(x);
        for (auto& [name, layer] : model->named_children()) {
            if (name == "sigmoid2") tensors[name].assign(v.value().begin(), v.value().end());
            v = layer->forward(v);
            if (name == "bn1" || name == "fc4") tensors[name].assign(v.value().begin(), v.value().end());
        }
    }
    for (std::size_t i = 3; i < 6; ++i) {
        const auto& r = rows[i];
        SCOPED_TRACE(r.layer);
        std::vector<float> values = tensors.at(r.layer);
        double sum = 0, squares = 0, saturated = 0;
        for (float v : values) sum += v;
        const double mean = sum / static_cast<double>(values.size());
        for (float v : values) {
            squares += (v - mean) * (v - mean);
            saturated += std::abs(v) > 3.0f;
        }
        std::sort(values.begin(), values.end());
        const double scale = std::max(1.0, static_cast<double>(values.back() - values.front()));
        EXPECT_NEAR(r.mean, mean, 1e-5 * scale);
        EXPECT_NEAR(r.std, std::sqrt(squares / static_cast<double>(values.size())), 1e-5 * scale);
        EXPECT_NEAR(r.p15, sorted_percentile(values, 0.15), 1e-5 * scale);
        EXPECT_NEAR(r.p50, sorted_percentile(values, 0.50), 1e-5 * scale);
        EXPECT_NEAR(r.p85, sorted_percentile(values, 0.85), 1e-5 * scale);
        if (r.saturated) {
            EXPECT_NEAR(*r.saturated, saturated / static_cast<double>(values.size()), 1e-3);
        }
    }
    EXPECT_GT(rows[4].std, 0.0) << "a constant tensor would hide a wrong layer";
    fs::remove_all(plain);
    fs::remove_all(recorded);
}

// An unknown layer is refused before anything is written, naming the flag, the name and the
// model's layers; a resumed run must name the same layers.
TEST(Cli, RecordActivationsOfAnUnknownLayerOrAnotherListIsRefused) {
    const fs::path dir = fresh_dir("activations_unknown");
    const std::string train = std::string(XGRAD_CLI) +
                              " train --model paper-mlp --dataset synthetic --synthetic-size 64 --batch 16 --steps 4 "
                              "--eval-every 2 --threads 1 --out " + dir.string() + " --record-activations ";
    auto r = run_command(train + "bn1,relu1");
    EXPECT_NE(r.status, 0);
    EXPECT_NE(r.output.find("--record-activations: the model has no layer 'relu1'; its layers are fc1, bn1, sigmoid1, fc2"),
              std::string::npos) << r.output;
    EXPECT_FALSE(fs::exists(dir)) << "a run directory was left";
    r = run_command(train + "bn1,bn1");
    EXPECT_NE(r.status, 0);
    EXPECT_NE(r.output.find("--record-activations: layer 'bn1' is named twice"), std::string::npos) << r.output;
    EXPECT_FALSE(fs::exists(dir));

    r = run_command(train + "bn1,sigmoid1");
    ASSERT_EQ(r.status, 0) << r.output;
    r = run_command(train + "bn1");
    EXPECT_NE(r.status, 0);
    EXPECT_NE(r.output.find("'record_activations' was [\"bn1\",\"sigmoid1\"], now [\"bn1\"]"), std::string::npos) << r.output;
    fs::remove_all(dir);
}

// `xgrad plot` draws the test accuracy, each recorded layer and the sigmoid's saturation.
TEST(Cli, PlotDrawsTheRunsMetricsAndActivations) {
    if (std::system("/usr/bin/python3 -c 'import matplotlib' 2>/dev/null") != 0) GTEST_SKIP() << "python3-matplotlib is not installed";
    const fs::path dir = fresh_dir("plot");
    auto r = run_command(std::string(XGRAD_CLI) +
                                        " train --model paper-mlp --dataset synthetic --synthetic-size 64 --batch 16 --steps 4 "
                                        "--eval-every 2 --threads 1 --record-activations fc1,sigmoid1 --out " + dir.string());
    ASSERT_EQ(r.status, 0) << r.output;
    r = run_command(std::string(XGRAD_CLI) + " plot " + dir.string());
    ASSERT_EQ(r.status, 0) << r.output;
    for (const char* png : {"test_accuracy.png", "activations_fc1.png", "activations_sigmoid1.png", "saturation.png"}) {
        EXPECT_TRUE(fs::exists(dir / png)) << png;
        EXPECT_NE(r.output.find(png), std::string::npos) << r.output;
    }
    const auto spec = read_json(dir / "saturation.png.json");
    ASSERT_EQ(spec.at("curves").size(), 1u) << "fc1 is no sigmoid";
    EXPECT_EQ(spec.at("curves")[0].at("label"), "sigmoid1");

    fs::remove(dir / "metrics.csv");
    fs::remove(dir / "activations.csv");
    r = run_command(std::string(XGRAD_CLI) + " plot " + dir.string());
    EXPECT_NE(r.status, 0);
    EXPECT_NE(r.output.find("holds neither metrics.csv nor activations.csv"), std::string::npos) << r.output;
    fs::remove_all(dir);
}

TEST(ActivationsCsv, ReadsBackWhatItWroteAndNamesTheLineThatDoesNotParse) {
    const std::vector<xgrad::ActivationStatistics> rows{{10, "bn1", 0.1, 1.0 / 3, -0.5, 0.0, 0.5, std::nullopt},
                                                        {10, "sigmoid1", -2.5, 1e-7, -3.25, -2.5, 1.75, 0.125}};
    const std::string csv = xgrad::activations_csv(rows);
    const auto back = xgrad::parse_activations_csv(csv, "a.csv");
    ASSERT_EQ(back.size(), 2u);
    EXPECT_EQ(xgrad::activations_csv(back), csv);
    EXPECT_EQ(back[0].std, 1.0 / 3);
    EXPECT_FALSE(back[0].saturated);
    EXPECT_EQ(back[1].saturated, 0.125);
    for (const std::string bad : {"10,bn1,0.1,1,2,3", "10,bn1,0.1,1,2,3,x,", "1.5,bn1,0,0,0,0,0,", "10,,0,0,0,0,0,"}) {
        try {
            xgrad::parse_activations_csv(std::string(xgrad::activations_header) + "\n" + bad + "\n", "a.csv");
            ADD_FAILURE() << bad << " was read";
        } catch (const std::runtime_error& e) {
            EXPECT_NE(std::string(e.what()).find("a.csv: line 2"), std::string::npos) << e.what();
        }
    }
    EXPECT_THROW(xgrad::parse_activations_csv("step,layer\n", "a.csv"), std::runtime_error);
}

// Batch Renorm's schedule reads the layers' step counter (num_batches_tracked), which the
// checkpoint must bring back: relaxed within the run, the limits of a counter restarted at 0
// would give other weights.
TEST(Trainer, BatchRenormResumesAfterSigkillToTheSameWeightsAndStepCounter) {
    TrainConfig c = small_mlp_run();
    c.model.norm = xgrad::Norm::batch_renorm;
    c.model.renorm = {.rmax = 2.0, .dmax = 1.0, .warmup = 20, .rmax_at = 300, .dmax_at = 200, .momentum = 0.05};
    c.steps = 600;
    const fs::path killed = expect_resume_after_sigkill_matches(c, "renorm");
    for (const char* counter : {"bn1.num_batches_tracked", "bn3.num_batches_tracked"}) {
        EXPECT_EQ(counter_in(killed / "checkpoint.npz", counter), 600) << counter;
    }
    EXPECT_EQ(read_json(killed / "config.json").at("renorm_rmax_at"), 300);
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

// A run killed after its last checkpoint but before summary.json is finished by the next
// command from metrics.csv: its summary holds the values the uninterrupted run wrote, to the bit.
TEST(Trainer, AResumedFinishedRunWritesTheSameSummaryAsTheUninterruptedOne) {
    const fs::path dir = fresh_dir("summary_precision");
    TrainConfig c = small_mlp_run();
    ASSERT_EQ(xgrad::train(c, dir).status, "finished");
    const auto straight = read_json(dir / "summary.json");
    fs::remove(dir / "summary.json");
    const auto resumed = xgrad::train(c, dir);
    EXPECT_FALSE(resumed.was_already_finished);
    for (const char* key : {"final_test_acc", "final_test_loss", "best_test_acc"}) {
        EXPECT_EQ(straight.at(key).get<double>(), read_json(dir / "summary.json").at(key).get<double>()) << key;
    }
    fs::remove_all(dir);
}

// A finite loss above divergence_loss is said to be one: the value and the threshold, not an overflow.
TEST(Trainer, ALossAboveTheThresholdIsReportedWithItsValueAndTheThreshold) {
    TrainConfig c = small_mlp_run();
    c.divergence_loss = 1e-3;  // the first loss, about log(10), is above it
    const fs::path dir = fresh_dir("loss_above");
    const auto outcome = xgrad::train(c, dir);
    ASSERT_EQ(outcome.status, "diverged");
    const auto& d = outcome.summary.at("divergence");
    const double loss = d.at("loss").get<double>();
    EXPECT_GT(loss, 1.0);
    char loss_text[32];
    std::snprintf(loss_text, sizeof loss_text, "%g", loss);
    const std::string cause = d.at("cause").get<std::string>();
    EXPECT_NE(cause.find("the training loss " + std::string(loss_text) + " is above divergence_loss 0.001"), std::string::npos)
        << cause;
    EXPECT_EQ(cause.find("overflow"), std::string::npos) << cause;
    EXPECT_FALSE(d.contains("first_nonfinite_layer")) << d.dump();
    fs::remove_all(dir);
}

// `c` trained for c.steps into `dir`, then made an unfinished run of `steps` steps whose
// checkpoint holds a NaN in bn1's running variance, as a damaged or foreign checkpoint would.
void make_run_with_nan_running_var(TrainConfig c, std::size_t steps, const fs::path& dir) {
    ASSERT_EQ(xgrad::train(c, dir).status, "finished");
    fs::remove(dir / "summary.json");
    c.steps = steps;
    std::ofstream(dir / "config.json") << xgrad::to_json(c).dump();
    xgrad::Npz poisoned;
    const xgrad::Npz trained = xgrad::load_npz(dir / "checkpoint.npz");
    for (const auto& [key, value] : trained.entries()) {
        xgrad::NpyArray copy = value;
        if (key == "bn1.running_var") std::get<xt::xarray<float>>(copy)(3) = std::numeric_limits<float>::quiet_NaN();
        poisoned.add(key, std::move(copy));
    }
    xgrad::save_npz(dir / "checkpoint.npz", poisoned);
}

// BN's running statistics are used only by evaluations: one holding a NaN makes every test loss
// NaN, which ends the run as diverged, naming the layer and the buffer, rather than as finished.
TEST(Trainer, ANonFiniteBufferAtAnEvaluationIsADivergenceNamingTheLayerAndBuffer) {
    TrainConfig c = small_mlp_run();
    c.steps = 10;
    const fs::path dir = fresh_dir("nan_buffer");
    make_run_with_nan_running_var(c, 30, dir);
    c.steps = 30;
    const auto outcome = xgrad::train(c, dir);
    EXPECT_EQ(outcome.status, "diverged");
    const auto& d = outcome.summary.at("divergence");
    EXPECT_EQ(d.at("step"), 20);
    const std::string cause = d.at("cause").get<std::string>();
    EXPECT_NE(cause.find("bn1 (BatchNorm1d"), std::string::npos) << cause;
    EXPECT_NE(cause.find("buffer running_var holds nan at element 3 of 100"), std::string::npos) << cause;
    EXPECT_EQ(xgrad::read_metrics_csv(dir / "metrics.csv").size(), 1u) << "no row with a NaN test loss";
    fs::remove_all(dir);
}

TEST(Cli, EvalOfACheckpointWithANonFiniteBufferIsAnErrorNamingTheLayerAndBuffer) {
    TrainConfig c = small_mlp_run();
    c.steps = 10;
    const fs::path dir = fresh_dir("eval_nan_buffer");
    make_run_with_nan_running_var(c, 30, dir);
    const fs::path checkpoint = dir / "checkpoint.npz";
    const auto [status, output] =
        run_command(std::string(XGRAD_CLI) + " eval --dataset synthetic --checkpoint " + checkpoint.string());
    EXPECT_NE(status, 0) << output;
    EXPECT_NE(output.find(checkpoint.string() + ": bn1 (BatchNorm1d"), std::string::npos) << output;
    EXPECT_NE(output.find("buffer running_var holds nan at element 3 of 100"), std::string::npos) << output;
    EXPECT_EQ(output.find("test accuracy"), std::string::npos) << output;
    fs::remove_all(dir);
}

// An epoch of 129 samples in batches of 64 ends with a batch of one, on which BatchNorm cannot
// train: with a norm over the batch it is skipped (2 steps an epoch), without one it is taken (3).
TEST(Cli, AnEpochsLastBatchOfOneSampleIsSkippedOnlyByNormsOverTheBatch) {
    for (const auto& [norm, steps_per_epoch] : {std::pair{"batch", 2}, {"ghost --ghost-batch 16", 2}, {"none", 3}}) {
        SCOPED_TRACE(norm);
        const fs::path dir = fresh_dir("last_batch_of_one");
        const auto [status, output] = run_command(std::string(XGRAD_CLI) +
                                                  " train --model paper-mlp --dataset synthetic --synthetic-size 129 --batch 64 "
                                                  "--epochs 3 --eval-every 100 --threads 1 --norm " + norm + " --out " + dir.string());
        ASSERT_EQ(status, 0) << output;
        EXPECT_EQ(read_json(dir / "summary.json").at("steps"), 3 * steps_per_epoch);
        fs::remove_all(dir);
    }
}

// A batch the model cannot train on is found before step 1, and before anything is written.
TEST(Cli, ABatchTheModelCannotTrainOnIsRefusedBeforeAnythingIsWritten) {
    const fs::path dir = fresh_dir("batch_of_one");
    const auto [status, output] = run_command(std::string(XGRAD_CLI) +
                                              " train --model paper-mlp --dataset synthetic --synthetic-size 64 --batch 1 "
                                              "--steps 5 --threads 1 --out " + dir.string());
    EXPECT_NE(status, 0);
    EXPECT_NE(output.find("the model's forward fails on a training batch of 1 samples (--batch): bn1 (BatchNorm1d"), std::string::npos)
        << output;
    EXPECT_NE(output.find("Expected more than 1 value per channel"), std::string::npos) << output;
    EXPECT_FALSE(fs::exists(dir)) << "a run directory was left";
}

// Two trainers into one directory: the second is refused, naming the process of the first,
// which goes on.
TEST(Cli, ASecondTrainerIntoADirectoryInUseIsRefusedNamingTheFirstsProcess) {
    TrainConfig c = small_mlp_run();
    c.steps = 100000;  // far longer than the test
    const fs::path dir = fresh_dir("in_use");
    const pid_t first = spawn(cli_args(c, dir));
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
    while (!fs::exists(dir / "config.json") && std::chrono::steady_clock::now() < deadline) {
        std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    ASSERT_TRUE(fs::exists(dir / "config.json"));
    std::string command = "timeout 60 ";  // without the lock, the second would train as long as the first
    for (const auto& arg : cli_args(c, dir)) command += arg + " ";
    const auto [status, output] = run_command(command);
    EXPECT_NE(status, 0) << output;
    EXPECT_NE(output.find("run directory '" + dir.string() + "' is in use by process " + std::to_string(first)),
              std::string::npos)
        << output;
    EXPECT_EQ(waitpid(first, nullptr, WNOHANG), 0) << "the first trainer stopped";
    kill(first, SIGKILL);
    wait_for(first);
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

// torch's layers under xgrad's state_dict names: each norm of the seed CNN, trained briefly on
// Fashion-MNIST, evaluates in torch (experiments/torch_eval.py, which reads the run's config.json)
// to the accuracy `xgrad eval` gives, on the first 2,000 test images (the whole set took 25 s a norm).
TEST(Cli, PyTorchEvaluatesAnXgradCheckpointToTheSameAccuracy) {
    if (std::system("/usr/bin/python3 -c 'import torch' 2>/dev/null") != 0) GTEST_SKIP() << "python3-torch is not installed";
    if (!fs::exists("/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz")) {
        GTEST_SKIP() << "dataset-fashion-mnist is not installed";
    }
    const std::pair<xgrad::Norm, std::string> cases[] = {
        {xgrad::Norm::batch, "--norm batch"},       {xgrad::Norm::group, "--norm group --norm-groups 8"},
        {xgrad::Norm::layer, "--norm layer"},       {xgrad::Norm::instance, "--norm instance"},
        {xgrad::Norm::frn, "--norm frn"},           {xgrad::Norm::batch_renorm, "--norm batch-renorm"},
        {xgrad::Norm::ghost, "--norm ghost --ghost-batch 16"}};
    for (const auto& [norm, flags] : cases) {
        SCOPED_TRACE(flags);
        TrainConfig c;  // seed-cnn on Fashion-MNIST, briefly
        c.model.norm = norm;
        c.model.norm_groups = 8;
        c.model.ghost_batch = 16;
        c.steps = 30;
        c.eval_every = 30;
        c.eval_samples = 500;
        const fs::path dir = fresh_dir("torch_eval");
        ASSERT_EQ(xgrad::train(c, dir).status, "finished");
        const std::string checkpoint = (dir / "checkpoint.npz").string();
        const std::string subset = " --eval-samples 2000";
        const std::string eval = std::string(XGRAD_CLI) + " eval --dataset fashion-mnist --checkpoint " + checkpoint + subset;
        const double ours = accuracy_printed_by(eval + " --model seed-cnn " + flags);
        const double torch = accuracy_printed_by("/usr/bin/python3 " XGRAD_SOURCE_DIR "/experiments/torch_eval.py --checkpoint " +
                                                 checkpoint + subset);
        EXPECT_GT(ours, 0.5);
        EXPECT_NEAR(ours, torch, 0.001) << "xgrad " << ours << ", PyTorch " << torch;
        fs::remove_all(dir);
    }
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
    const std::pair<const char*, std::vector<std::string>> cases[] = {{"--norm batchnorm", {"batchnorm", "batch-renorm", "frn", "none"}},
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

// What each norm needs to train the model in tiny_train (16 samples a batch).
std::string settings_for(const std::string& norm, const std::string& model) {
    if (norm == "group") return model == "paper-mlp" ? " --norm-groups 10" : " --norm-groups 8";
    if (norm == "ghost") return " --ghost-batch 8";
    if (norm == "batch-renorm") return " --renorm-warmup 0 --renorm-rmax-at 2 --renorm-dmax-at 2";
    return "";
}

// Two steps of each model with each norm, through the command line; paper-mlp, whose norm layers
// all follow a Linear, refuses the spatial norms, naming itself and the norm.
TEST(Cli, EveryNormTrainsTheSeedCnnAndPaperMlp) {
    for (const std::string model : {"seed-cnn", "paper-mlp"}) {
        for (const auto& norm : xgrad::norm_names()) {
            SCOPED_TRACE(model + " --norm " + norm);
            const fs::path dir = fresh_dir("every_norm");
            const auto [status, output] = run_command(tiny_train(model, "--norm " + norm + settings_for(norm, model), dir));
            if (model == "paper-mlp" && (norm == "instance" || norm == "frn")) {
                EXPECT_NE(status, 0);
                EXPECT_NE(output.find("paper-mlp has its norm layers after Linear layers only, which --norm " + norm +
                                      " does not normalize"),
                          std::string::npos) << output;
                EXPECT_FALSE(fs::exists(dir));
                continue;
            }
            ASSERT_EQ(status, 0) << output;
            EXPECT_EQ(read_json(dir / "summary.json").at("status"), "finished");
            const auto config = read_json(dir / "config.json");
            EXPECT_EQ(config.at("norm"), norm);
            EXPECT_EQ(config.contains("norm_groups"), norm == "group");
            EXPECT_EQ(config.contains("ghost_batch"), norm == "ghost");
            EXPECT_EQ(config.contains("renorm_rmax_at"), norm == "batch-renorm");
            const xgrad::Npz checkpoint = xgrad::load_npz(dir / "checkpoint.npz");
            EXPECT_EQ(checkpoint.find("bn1.weight") != nullptr, norm != "none");
            EXPECT_EQ(checkpoint.find("bn1.tau") != nullptr, norm == "frn");
            if (norm == "batch-renorm") {
                EXPECT_EQ(counter_in(dir / "checkpoint.npz", "bn1.num_batches_tracked"), 2);
            }
            if (norm == "ghost") {
                EXPECT_EQ(counter_in(dir / "checkpoint.npz", "bn1.num_batches_tracked"), 4) << "2 chunks a step";
            }
            fs::remove_all(dir);
        }
    }
}

// --threads and --jobs below 1, in every command that takes them: an error naming the flag and its
// range, before anything runs (TBB aborts the process on a limit of 0).
TEST(Cli, ThreadAndJobCountsBelowOneAreErrorsNamingTheFlag) {
    const fs::path dir = fresh_dir("thread_counts");
    const std::string cli = std::string(XGRAD_CLI);
    const std::pair<std::string, std::string> cases[] = {
        {cli + " experiment seed-cnn-bn --threads 0 --results " + dir.string(),
         "--threads: expected the number of threads, a whole number from 1 to 1024; got 0"},
        {cli + " experiment seed-cnn-bn --threads -1 --results " + dir.string(),
         "--threads: expected the number of threads, a whole number from 1 to 1024; got -1"},
        {cli + " experiment convergence --jobs 0 --results " + dir.string(),
         "--jobs: expected the number of runs trained at once, a whole number from 1 to 64; got 0"},
        {cli + " train --model paper-mlp --dataset synthetic --synthetic-size 64 --batch 16 --steps 2 --threads 0 --out " +
             (dir / "run").string(),
         "--threads: expected the number of threads, a whole number from 1 to 1024; got 0"}};
    for (const auto& [command, message] : cases) {
        SCOPED_TRACE(command);
        const auto [status, output] = run_command(command);
        EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) != 0) << "status " << status;
        EXPECT_NE(output.find(message), std::string::npos) << output;
        EXPECT_TRUE(!fs::exists(dir) || fs::is_empty(dir)) << "nothing written";
    }
    fs::remove_all(dir);
}

// Each norm setting: with another norm, an error naming both; out of its range, an error naming
// the flag and the range; and nothing trained.
TEST(Cli, NormSettingsOutOfPlaceOrRangeAreErrorsNamingTheFlag) {
    const std::pair<std::string, std::string> cases[] = {
        {"--norm layer --norm-groups 8", "--norm-groups applies to --norm group only, not to --norm layer"},
        {"--ghost-batch 4", "--ghost-batch applies to --norm ghost only, not to --norm batch"},
        {"--bn off --renorm-momentum 0.1", "--renorm-momentum applies to --norm batch-renorm only, not to --norm none"},
        {"--norm ghost --ghost-batch 4 --renorm-rmax 2", "--renorm-rmax applies to --norm batch-renorm only, not to --norm ghost"},
        {"--norm group --norm-groups 0", "--norm-groups: expected a whole number >= 1; got 0"},
        {"--norm group --norm-groups -2", "--norm-groups: expected a whole number >= 1; got -2"},
        {"--norm group --norm-groups 3", "seed-cnn's bn1 (GroupNorm): --norm-groups 3 does not divide its 32 channels"},
        {"--norm ghost", "--norm ghost needs --ghost-batch B, the samples of each virtual batch (>= 2)"},
        {"--norm ghost --ghost-batch 1", "--ghost-batch: expected a whole number >= 2; got 1"},
        {"--norm ghost --ghost-batch -2", "--ghost-batch: expected a whole number >= 2; got -2"},
        {"--norm ghost --ghost-batch 16", "bn1's virtual batch of 16 (--ghost-batch, or ghost_batch in a model spec) is not below --batch 16: every batch would be one virtual batch"},
        {"--norm ghost --ghost-batch 5", "bn1's virtual batch of 5 (--ghost-batch, or ghost_batch in a model spec) splits each batch (--batch) of 16 samples into virtual batches "
                                         "whose last has one sample"},
        {"--norm batch-renorm --renorm-rmax 0.5", "--renorm-rmax: expected a finite number >= 1; got 0.5"},
        {"--norm batch-renorm --renorm-dmax -1", "--renorm-dmax: expected a finite number >= 0; got -1"},
        {"--norm batch-renorm --renorm-warmup -3", "--renorm-warmup: expected a whole number of steps >= 0; got -3"},
        {"--norm batch-renorm --renorm-warmup 100 --renorm-rmax-at 50",
         "--renorm-rmax-at: expected a step >= --renorm-warmup (100); got 50"},
        {"--norm batch-renorm --renorm-dmax-at 10", "--renorm-dmax-at: expected a step >= --renorm-warmup (5000); got 10"},
        {"--norm batch-renorm --renorm-momentum 0", "--renorm-momentum: expected a number in (0, 1]; got 0"},
        {"--norm frn --noisy-bn", "FRN's layer ends in its nonlinearity, the TLU (--norm frn given)"}};
    const fs::path dir = fresh_dir("norm_settings");
    for (const auto& [flags, message] : cases) {
        SCOPED_TRACE(flags);
        const auto [status, output] = run_command(tiny_train("seed-cnn", flags, dir));
        EXPECT_NE(status, 0);
        EXPECT_NE(output.find(message), std::string::npos) << output;
        EXPECT_FALSE(fs::exists(dir / "config.json")) << "the same directory can take the corrected command";
    }
    // 69 samples in batches of 16 end with one of 5, whose virtual batches of 4 end with one of 1.
    const auto [status, output] = run_command(std::string(XGRAD_CLI) +
        " train --dataset synthetic --synthetic-size 69 --batch 16 --steps 1 --norm ghost --ghost-batch 4 --out " + dir.string());
    EXPECT_NE(status, 0);
    EXPECT_NE(output.find("bn1's virtual batch of 4 (--ghost-batch, or ghost_batch in a model spec) splits an epoch's last batch of 5 samples"), std::string::npos) << output;
    EXPECT_FALSE(fs::exists(dir / "config.json"));
    fs::remove_all(dir);
}

// A finished run is handed back only to the command that made it: another model is refused.
TEST(Cli, AFinishedRunIsRefusedToACommandOfAnotherModel) {
    const fs::path dir = fresh_dir("finished_other_model");
    ASSERT_EQ(run_command(tiny_train("paper-mlp", "", dir)).status, 0);
    const auto [status, output] = run_command(tiny_train("seed-cnn", "", dir));
    EXPECT_NE(status, 0) << output;
    EXPECT_NE(output.find("'model' was \"paper-mlp\", now \"seed-cnn\""), std::string::npos) << output;
    EXPECT_EQ(output.find("holds a finished run"), std::string::npos) << output;
    fs::remove_all(dir);
}

// A finished run's summary.json of the wrong types is an error naming the file and the key, not a
// JSON library's message or a summary printed as if it were sound.
TEST(Cli, AFinishedRunsSummaryOfTheWrongTypesIsAnErrorNamingTheKey) {
    const fs::path dir = fresh_dir("summary_types");
    ASSERT_EQ(run_command(tiny_train("paper-mlp", "", dir)).status, 0);
    const nlohmann::json sound = read_json(dir / "summary.json");
    const std::pair<const char*, nlohmann::json> cases[] = {
        {"status", 5}, {"status", "done"}, {"steps", -3}, {"steps", "12"}, {"seconds", "fast"}, {"final_test_acc", "x"}};
    for (const auto& [key, value] : cases) {
        nlohmann::json forged = sound;
        forged[key] = value;
        std::ofstream(dir / "summary.json") << forged.dump();
        const auto [status, output] = run_command(tiny_train("paper-mlp", "", dir));
        EXPECT_NE(status, 0) << key << ": " << output;
        EXPECT_NE(output.find((dir / "summary.json").string() + ": key '" + key + "' must be"), std::string::npos)
            << output;
    }
    fs::remove_all(dir);
}

// A run records its norm's settings, and a directory is taken up only with the same ones.
TEST(Cli, ARunIsResumedOnlyWithTheSameNormSettings) {
    const fs::path dir = fresh_dir("norm_settings_resume");
    ASSERT_EQ(run_command(tiny_train("seed-cnn", "--norm group --norm-groups 8", dir)).status, 0);
    EXPECT_EQ(read_json(dir / "config.json").at("norm_groups"), 8);
    EXPECT_NE(output_of(tiny_train("seed-cnn", "--norm group --norm-groups 8", dir)).find("holds a finished run"), std::string::npos);
    const auto [status, output] = run_command(tiny_train("seed-cnn", "--norm group --norm-groups 16", dir));
    EXPECT_NE(status, 0);
    EXPECT_NE(output.find("'norm_groups' was 8, now 16"), std::string::npos) << output;
    fs::remove_all(dir);
}

// Conv2d on oneDNN (layers/conv_backend.hpp): recorded in config.json (the own backend, as before
// the flag, is not), a run is resumed only on the backend it began on, and an unknown backend is an
// error naming the flag and the valid ones.
TEST(Cli, ConvBackendIsRecordedAndARunIsResumedOnlyOnTheSameOne) {
    const fs::path dir = fresh_dir("conv_backend");
    // SGD, whose steps are the gradients' (Adam's would hide how far they are apart).
    const std::string sgd = "--optimizer sgd --lr 0.1";
    const auto [unknown_status, unknown_output] = run_command(tiny_train("seed-cnn", "--conv-backend mkldnn", dir));
    EXPECT_NE(unknown_status, 0);
    EXPECT_NE(unknown_output.find("--conv-backend"), std::string::npos) << unknown_output;
    EXPECT_NE(unknown_output.find("onednn"), std::string::npos) << unknown_output;
    EXPECT_FALSE(fs::exists(dir / "config.json"));
    if (!xgrad::onednn_convolution_available()) {
        const auto [status, output] = run_command(tiny_train("seed-cnn", sgd + " --conv-backend onednn", dir));
        EXPECT_NE(status, 0);
        EXPECT_NE(output.find("no oneDNN"), std::string::npos) << output;
        fs::remove_all(dir);
        return;
    }
    const auto [status, output] = run_command(tiny_train("seed-cnn", sgd + " --conv-backend onednn", dir));
    ASSERT_EQ(status, 0) << output;
    EXPECT_EQ(read_json(dir / "config.json").at("conv_backend"), "onednn");
    const auto [own_status, own_output] = run_command(tiny_train("seed-cnn", sgd, dir));
    EXPECT_NE(own_status, 0);
    EXPECT_NE(own_output.find("conv_backend"), std::string::npos) << own_output;
    // oneDNN's weight gradient depends on the thread count: so does the run.
    std::string on_two_threads = tiny_train("seed-cnn", sgd + " --conv-backend onednn", dir);
    on_two_threads.replace(on_two_threads.find("--threads 1"), 11, "--threads 2");
    const auto [threads_status, threads_output] = run_command(on_two_threads);
    EXPECT_NE(threads_status, 0);
    EXPECT_NE(threads_output.find("'threads' was 1, now 2"), std::string::npos) << threads_output;
    const fs::path own_dir = fresh_dir("conv_backend_own");
    ASSERT_EQ(run_command(tiny_train("seed-cnn", sgd + " --conv-backend own", own_dir)).status, 0);
    EXPECT_FALSE(read_json(own_dir / "config.json").contains("conv_backend"));
    // The convolutions ran on oneDNN: the weights after two steps differ from the own code's in
    // their rounding, not more.
    const xgrad::Npz onednn_run = xgrad::load_npz(dir / "checkpoint.npz");
    const xgrad::Npz own_run = xgrad::load_npz(own_dir / "checkpoint.npz");
    const auto& conv2_onednn = std::get<xt::xarray<float>>(*onednn_run.find("conv2.weight"));
    const auto& conv2_own = std::get<xt::xarray<float>>(*own_run.find("conv2.weight"));
    EXPECT_NE(conv2_onednn, conv2_own);
    EXPECT_LT(xt::amax(xt::abs(conv2_onednn - conv2_own))(), 1e-4);
    fs::remove_all(dir);
    fs::remove_all(own_dir);
}

// eval builds the model a run recorded, without model flags; one that says otherwise is an error
// naming it.
TEST(Cli, EvalBuildsTheModelOfTheRunsConfigJsonAndRefusesFlagsThatContradictIt) {
    const fs::path dir = fresh_dir("eval_contradiction");
    ASSERT_EQ(run_command(tiny_train("seed-cnn", "--norm group --norm-groups 8", dir)).status, 0);
    const std::string eval = std::string(XGRAD_CLI) + " eval --dataset synthetic --checkpoint " + (dir / "checkpoint.npz").string();
    const std::pair<const char*, std::string> cases[] = {
        {"--norm layer", "--norm layer contradicts " + (dir / "config.json").string() + ", which records norm \"group\""},
        {"--norm group --norm-groups 16", "--norm-groups 16 contradicts " + (dir / "config.json").string() + ", which records norm_groups 8"},
        {"--bn on", "--bn on contradicts " + (dir / "config.json").string() + ", which records norm \"group\""},
        {"--model paper-mlp", "--model paper-mlp contradicts " + (dir / "config.json").string() + ", which records model \"seed-cnn\""}};
    for (const auto& [flags, message] : cases) {
        SCOPED_TRACE(flags);
        const auto [status, output] = run_command(eval + " " + flags);
        EXPECT_NE(status, 0);
        EXPECT_NE(output.find(message), std::string::npos) << output;
    }
    const std::string output = output_of(eval + " --norm group --norm-groups 8 --model seed-cnn");
    EXPECT_EQ(output_of(eval), output) << "the model config.json records";
    fs::remove_all(dir);
}

std::string file_contents(const fs::path& path) {
    std::ifstream in(path, std::ios::binary);
    return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

// --recalibrate N: the accuracy and loss the command prints after recalibration are those of
// the checkpoint's model recalibrated here on the batches its help names (the first N of the
// loader for --batch and --seed, incomplete batches skipped: 4 batches of 600 of the 2,000
// training images are epoch 0's three and epoch 1's first); the checkpoint is not written.
// Both evaluations are over the first --eval-samples test images.
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
                                         checkpoint.string() + " --recalibrate 4 --batch 600 --seed 4 --eval-samples 300");
    EXPECT_NE(output.find("recalibrated 3 BatchNorm layers over 4 training batches of 600 (seed 4)\n"), std::string::npos)
        << output;

    xgrad::Rng rng(0);
    auto model = xgrad::make_model(xgrad::ModelConfig{}, rng);  // seed-cnn with BN
    xgrad::load_checkpoint(checkpoint, *model);
    const xgrad::Dataset train_set = xgrad::load_dataset("synthetic", xgrad::Split::train);
    const xgrad::Dataset test_set = xgrad::load_dataset("synthetic", xgrad::Split::test);
    const xgrad::Evaluation before = xgrad::evaluate(*model, test_set, false, 300);
    xgrad::BatchLoader loader(train_set, {.batch_size = 600, .seed = 4, .drop_last = true});
    ASSERT_EQ(xgrad::recalibrate_batch_norm<float>(*model, 4, [&loader](std::size_t) { return loader.next().images; }), 3u);
    const xgrad::Evaluation after = xgrad::evaluate(*model, test_set, false, 300);

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
        EXPECT_NE(message.find("--recalibrate: expected the number of training batches, a whole number from 1 to 1000000; got " +
                               std::string(n)),
                  std::string::npos)
            << message;
    }
    const auto [status, message] = run_command(eval + "--batch 32");
    EXPECT_NE(status, 0);
    EXPECT_NE(message.find("--batch requires --recalibrate"), std::string::npos) << message;
}

}  // namespace
