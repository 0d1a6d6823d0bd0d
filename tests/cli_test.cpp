// The xgrad command line's checks of its flags: every numeric flag out of its range, a flag
// without its value, an unknown command, an empty path and a setting that the chosen optimizer
// does not have are each an error naming the flag and what it takes, and leave nothing written;
// check_train_config says the same of a TrainConfig built in code.
#include <sys/wait.h>
#include <unistd.h>

#include <cstdint>
#include <filesystem>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

#include "experiments/train_config.hpp"
#include "tests/error_message.hpp"
#include "tests/run_command.hpp"

namespace {

namespace fs = std::filesystem;
using xgrad_test::run_command;

fs::path fresh_dir(const std::string& name) {
    const fs::path dir = fs::temp_directory_path() / ("xgrad_cli_test_" + name + "_" + std::to_string(getpid()));
    fs::remove_all(dir);
    return dir;
}

// The xgrad command line with `args`, run in `cwd`; a flag accepted by mistake (--epochs -1 once
// trained forever) ends in the time limit instead of hanging the suite.
std::string xgrad(const std::string& args, const fs::path& cwd) {
    return "cd '" + cwd.string() + "' && timeout 60 " + std::string(XGRAD_CLI) + " " + args;
}

// An epoch of four steps of the paper's MLP on synthetic data into `out`, with `flags`.
std::string tiny_train(const std::string& flags, const fs::path& out) {
    return "train --model paper-mlp --dataset synthetic --synthetic-size 64 --batch 16 --eval-every 2 --threads 1 " +
           flags + " --out '" + out.string() + "'";
}

bool is_empty_dir(const fs::path& dir) { return fs::is_directory(dir) && fs::is_empty(dir); }

// Runs each command in an empty directory, which it is to leave empty: an error (exit status 1 to
// 125, no signal, no time limit) whose output has the message.
void expect_refused_writing_nothing(const std::vector<std::pair<std::string, std::string>>& cases, const fs::path& dir) {
    for (const auto& [args, message] : cases) {
        SCOPED_TRACE(args);
        fs::create_directories(dir);
        const auto [status, output] = run_command(xgrad(args, dir));
        EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) != 0 && WEXITSTATUS(status) < 124) << "status " << status << "\n" << output;
        EXPECT_NE(output.find(message), std::string::npos) << output;
        EXPECT_TRUE(is_empty_dir(dir)) << "nothing written";
        fs::remove_all(dir);
    }
}

// Every count flag of every command, below and above its range and not a whole number: -1 once
// wrapped around to 2^64 - 1 in the unsigned options (--epochs -1 trained forever), 1e11 images
// ended in a bare std::bad_alloc.
TEST(Cli, CountFlagsOutOfRangeAreErrorsNamingTheFlagAndItsRange) {
    const fs::path dir = fresh_dir("counts");
    const fs::path run = dir / "run";
    const std::string eval = "eval --dataset synthetic --checkpoint " XGRAD_SOURCE_DIR "/README.md ";
    expect_refused_writing_nothing(
        {{tiny_train("--epochs -1", run), "--epochs: expected a whole number from 1 to 1000000; got -1"},
         {tiny_train("--epochs 0", run), "--epochs: expected a whole number from 1 to 1000000; got 0"},
         {tiny_train("--epochs 1000001", run), "--epochs: expected a whole number from 1 to 1000000; got 1000001"},
         // CLI11 reads a leading 0 as octal: 010 would have passed as 10 and trained 8 epochs.
         {tiny_train("--epochs 010", run), "--epochs: expected a whole number from 1 to 1000000; got 010"},
         {tiny_train("--steps -5", run), "--steps: expected a whole number from 1 to 100000000; got -5"},
         {tiny_train("--batch 0", run), "--batch: expected a whole number from 1 to 1000000; got 0"},
         {tiny_train("--batch 18446744073709551615", run),
          "--batch: expected a whole number from 1 to 1000000; got 18446744073709551615"},
         {tiny_train("--batch 2.5", run), "--batch: expected a whole number from 1 to 1000000; got 2.5"},
         {tiny_train("--eval-every -1", run), "--eval-every: expected a whole number from 1 to 100000000; got -1"},
         {tiny_train("--eval-samples -1", run), "--eval-samples: expected a whole number from 0 to 1000000; got -1"},
         {tiny_train("--synthetic-size 1e11", run), "--synthetic-size: expected a whole number from 1 to 1000000; got 1e11"},
         {tiny_train("--synthetic-size 100000000000", run),
          "--synthetic-size: expected a whole number from 1 to 1000000; got 100000000000"},
         {tiny_train("--seed -1", run), "--seed: expected a whole number from 0 to 4294967295; got -1"},
         {tiny_train("--threads 1025", run), "--threads: expected the number of threads, a whole number from 1 to 1024; got 1025"},
         {eval + "--eval-samples -1", "--eval-samples: expected a whole number from 0 to 1000000; got -1"},
         {eval + "--eval-samples 1000001", "--eval-samples: expected a whole number from 0 to 1000000; got 1000001"},
         {eval + "--recalibrate -1", "--recalibrate: expected the number of training batches, a whole number from 1 to 1000000; got -1"},
         {eval + "--recalibrate 2 --batch -64", "--batch: expected a whole number from 1 to 1000000; got -64"},
         {eval + "--recalibrate 2 --seed -1", "--seed: expected a whole number from 0 to 4294967295; got -1"},
         {"experiment convergence --results " + dir.string() + " --jobs 65",
          "--jobs: expected the number of runs trained at once, a whole number from 1 to 64; got 65"},
         {"experiment seed-cnn-bn --results " + dir.string() + " --threads 99999999999999999999",
          "--threads: expected the number of threads, a whole number from 1 to 1024; got 99999999999999999999"}},
        dir);
}

// The real-valued flags: NaN, infinities and values out of range (--lr nan was once trained and
// recorded as null), and text that is not a number.
TEST(Cli, RealFlagsOutOfRangeAreErrorsNamingTheFlagAndItsRange) {
    const fs::path dir = fresh_dir("reals");
    const fs::path run = dir / "run";
    expect_refused_writing_nothing(
        {{tiny_train("--lr nan", run), "--lr: expected a finite number > 0; got nan"},
         {tiny_train("--lr inf", run), "--lr: expected a finite number > 0; got inf"},
         {tiny_train("--lr 0", run), "--lr: expected a finite number > 0; got 0"},
         {tiny_train("--lr fast", run), "--lr: expected a finite number > 0; got fast"},
         {tiny_train("--optimizer sgd --momentum -0.1", run), "--momentum: expected a number in [0, 1); got -0.1"},
         {tiny_train("--optimizer sgd --momentum 1", run), "--momentum: expected a number in [0, 1); got 1"},
         {tiny_train("--init-sigma -1", run), "--init-sigma: expected a finite number > 0; got -1"},
         {tiny_train("--init-sigma 0", run), "--init-sigma: expected a finite number > 0; got 0"},
         {tiny_train("--dropout -0.1", run), "--dropout: expected a number in [0, 1); got -0.1"},
         {tiny_train("--dropout 1.5", run), "--dropout: expected a number in [0, 1); got 1.5"},
         {tiny_train("--dropout 1", run), "--dropout: expected a number in [0, 1); got 1"},
         {tiny_train("--norm batch-renorm --renorm-momentum nan", run), "--renorm-momentum: expected a number in (0, 1]; got nan"},
         {tiny_train("--norm batch-renorm --renorm-rmax inf", run), "--renorm-rmax: expected a finite number >= 1; got inf"}},
        dir);
}

// CLI11 takes the argument after a flag as its value even when it is the next flag.
TEST(Cli, AFlagFollowedByAnotherFlagIsAnErrorNamingBoth) {
    const fs::path dir = fresh_dir("missing_value");
    expect_refused_writing_nothing(
        {{tiny_train("--batch --epochs 2", dir / "run"),
          "--batch: expected a whole number from 1 to 1000000; got --epochs, the next flag (the value is missing)"},
         {tiny_train("--lr --seed 3", dir / "run"), "--lr: expected a finite number > 0; got --seed, the next flag (the value is missing)"}},
        dir);
}

TEST(Cli, AnUnknownOrMissingCommandIsAnErrorListingTheCommands) {
    const fs::path dir = fresh_dir("command");
    expect_refused_writing_nothing({{"trian --out run", "unknown command 'trian'; the commands are train, eval, experiment, sweep, report, plot"},
                                    {"", "no command given; the commands are train, eval, experiment, sweep, report, plot"}},
                                   dir);
}

// An empty path would put the files into the working directory.
TEST(Cli, AnEmptyPathIsAnErrorNamingTheFlag) {
    const fs::path dir = fresh_dir("empty_path");
    expect_refused_writing_nothing({{tiny_train("", ""), "--out: expected the path of the run directory; got an empty one"},
                                    {"experiment convergence --results ''", "--results: expected the path of the results directory; got an empty one"},
                                    {"report --results ''", "--results: expected the path of the results directory; got an empty one"},
                                    {"report --out ''", "--out: expected the path of the report; got an empty one"}},
                                   dir);
}

// --momentum is SGD's: with Adam (the default optimizer) it was ignored without a word.
TEST(Cli, MomentumWithAdamIsAnErrorNamingBoth) {
    const fs::path dir = fresh_dir("momentum");
    expect_refused_writing_nothing(
        {{tiny_train("--momentum 0.9", dir / "run"), "--momentum 0.9 applies to --optimizer sgd only, not to --optimizer adam"}}, dir);
    const auto [status, output] = run_command(xgrad(tiny_train("--optimizer sgd --lr 0.1 --momentum 0.9", dir), "/"));
    EXPECT_EQ(status, 0) << output;
    fs::remove_all(dir);
}

// A refused configuration leaves its --out as it found it: the corrected command takes it.
TEST(Cli, ARefusedConfigurationLeavesItsDirectoryToTheCorrectedOne) {
    const fs::path dir = fresh_dir("corrected");
    for (const std::string refused : {"--dropout 1.5", "--lr nan", "--init-sigma -1", "--optimizer adam --momentum 0.5"}) {
        SCOPED_TRACE(refused);
        EXPECT_NE(run_command(xgrad(tiny_train(refused, dir), "/")).status, 0);
        EXPECT_FALSE(fs::exists(dir));
    }
    const auto [status, output] = run_command(xgrad(tiny_train("--dropout 0.5", dir), "/"));
    EXPECT_EQ(status, 0) << output;
    EXPECT_TRUE(fs::exists(dir / "summary.json"));
    fs::remove_all(dir);
}

// The same ranges for a TrainConfig built in code, as the drivers build theirs.
TEST(TrainConfig, CheckNamesTheFirstFieldOutOfRangeAsItsFlag) {
    using xgrad::TrainConfig;
    const auto error_of = [](TrainConfig config) { return xgrad_test::error_of([&] { xgrad::check_train_config(config); }); };
    EXPECT_NO_THROW(xgrad::check_train_config(TrainConfig{}));
    const std::vector<std::pair<void (*)(TrainConfig&), std::string>> cases{
        {[](TrainConfig& c) { c.lr = std::numeric_limits<double>::quiet_NaN(); }, "--lr: expected a finite number > 0; got nan"},
        {[](TrainConfig& c) { c.model.dropout = 1.5; }, "--dropout: expected a number in [0, 1); got 1.5"},
        {[](TrainConfig& c) { c.model.init_sigma = -1.0; }, "--init-sigma: expected a finite number > 0; got -1"},
        {[](TrainConfig& c) { c.momentum = 0.9; }, "--momentum 0.9 applies to --optimizer sgd only, not to --optimizer adam"},
        {[](TrainConfig& c) { c.epochs = static_cast<std::size_t>(-1); },
         "--epochs: expected a whole number from 1 to 1000000; got 18446744073709551615"},
        {[](TrainConfig& c) { c.steps = 100'000'001; }, "--steps: expected a whole number from 1 to 100000000; got 100000001"},
        {[](TrainConfig& c) { c.batch = 0; }, "--batch: expected a whole number from 1 to 1000000; got 0"},
        {[](TrainConfig& c) { c.synthetic_size = 100'000'000'000; },
         "--synthetic-size: expected a whole number from 1 to 1000000; got 100000000000"},
        {[](TrainConfig& c) { c.seed = std::uint64_t{1} << 32; }, "--seed: expected a whole number from 0 to 4294967295; got 4294967296"},
        {[](TrainConfig& c) { c.threads = 0; }, "--threads: expected a whole number from 1 to 1024; got 0"}};
    for (const auto& [change, message] : cases) {
        TrainConfig config;
        change(config);
        EXPECT_EQ(error_of(config), message);
    }
    TrainConfig sgd;
    sgd.optimizer = "sgd";
    sgd.momentum = 0.9;
    sgd.steps = 5;
    EXPECT_NO_THROW(xgrad::check_train_config(sgd));
}

}  // namespace
