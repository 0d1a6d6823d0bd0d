// `xgrad train` under mpirun, through the command line: the seed CNN trained with SyncBatchNorm
// over 2 and 3 ranks (the global batch of 64 split 32 + 32, and 22 + 21 + 21) ends with the
// weights one process gets on the whole batch, within float rounding, and its spec file with the
// built-in's weights, bit for bit; a run is refused with a
// clear message when resumed with another number of ranks; a rank killed with SIGKILL ends the
// whole job with mpirun naming it, and the same command run again resumes to the bits of a run
// that was never stopped; `xgrad experiment` under mpirun deals whole runs out to the ranks and
// ends with the results of one process; --record-activations writes rank 0's statistics on the
// first test images. Skipped where xgrad was built without MPI.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <sstream>
#include <string>
#include <variant>
#include <vector>

#include <nlohmann/json.hpp>

#include "experiments/activations_log.hpp"
#include "experiments/checkpoint.hpp"
#include "experiments/dataset.hpp"
#include "experiments/models.hpp"
#include "experiments/npz.hpp"
#include "experiments/regular_file.hpp"
#include "layers/distributed/communicator.hpp"
#include "tests/run_command.hpp"
#include "tests/temp_dir.hpp"

namespace {

namespace fs = std::filesystem;
using xgrad_test::run_command;

class DistributedTrain : public xgrad_test::TempDir {
protected:
    void SetUp() override {
        if (!xgrad::built_with_mpi()) GTEST_SKIP() << "xgrad was built without MPI";
        TempDir::SetUp();
    }
};

// The seed CNN (or the model of `model_flag`) on 256 synthetic images, 20 steps of SGD with
// momentum (Adam would turn the rounding-level gradients of the biases before each BatchNorm into
// whole steps of lr).
std::string train(const fs::path& out, const std::string& more = "", const std::string& model_flag = "--model seed-cnn") {
    return std::string(XGRAD_CLI) + " train " + model_flag +
           " --dataset synthetic --synthetic-size 256 --batch 64 --eval-every 10"
           " --eval-samples 100 --optimizer sgd --lr 0.05 --momentum 0.9 --threads 1 --sync-bn --out " +
           out.string() + " " + more;
}

// mpirun bounded in time: a job that hangs fails the test instead of the suite.
std::string on_ranks(int ranks, const std::string& command) {
    return "timeout 240 mpirun --allow-run-as-root --oversubscribe -np " + std::to_string(ranks) + " " + command;
}

// The largest difference between two checkpoints' model arrays over the largest magnitude;
// trainer/seconds skipped, and (bitwise) true when every array is equal.
double relative_difference(const fs::path& a, const fs::path& b, bool* bitwise = nullptr) {
    const xgrad::Npz x = xgrad::load_npz(a), y = xgrad::load_npz(b);
    double worst = 0.0;
    if (bitwise) *bitwise = x.entries().size() == y.entries().size();
    for (const auto& [key, value] : x.entries()) {
        if (key == "trainer/seconds") continue;
        const xgrad::NpyArray* other = y.find(key);
        if (!other) {
            ADD_FAILURE() << b << " has no " << key;
            return INFINITY;
        }
        if (bitwise && !(value == *other)) *bitwise = false;
        const auto* p = std::get_if<xt::xarray<float>>(&value);
        const auto* q = std::get_if<xt::xarray<float>>(other);
        if (!p || !q || p->size() == 0) continue;
        const double scale = std::max(1.0, static_cast<double>(xt::amax(xt::abs(*q))()));
        worst = std::max(worst, static_cast<double>(xt::amax(xt::abs(*p - *q))()) / scale);
    }
    return worst;
}

TEST_F(DistributedTrain, SyncBatchNormOverRanksEndsWithOneProcessWeights) {
    const auto one = run_command(train(path("one")));
    ASSERT_EQ(one.status, 0) << one.output;
    for (const int ranks : {2, 3}) {
        const fs::path out = path("ranks" + std::to_string(ranks));
        const auto many = run_command(on_ranks(ranks, train(out)));
        ASSERT_EQ(many.status, 0) << many.output;
        EXPECT_LE(relative_difference(path("one") / "checkpoint.npz", out / "checkpoint.npz"), 1e-4)
            << ranks << " ranks against one process";
        EXPECT_NE(many.output.find("\"world_size\": " + std::to_string(ranks)), std::string::npos) << many.output;
    }
}

// The seed CNN's spec file builds SyncBatchNorm layers under --sync-bn as the built-in does: the
// same checkpoint, bit for bit, over 2 ranks.
TEST_F(DistributedTrain, TheSeedCnnSpecOverRanksEqualsTheBuiltinBitForBit) {
    const fs::path spec = fs::path(XGRAD_SOURCE_DIR) / "experiments" / "specs" / "models" / "seed-cnn.json";
    const auto builtin = run_command(on_ranks(2, train(path("builtin"))));
    ASSERT_EQ(builtin.status, 0) << builtin.output;
    const auto from_spec = run_command(on_ranks(2, train(path("spec"), "", "--model-spec " + spec.string())));
    ASSERT_EQ(from_spec.status, 0) << from_spec.output;
    bool bitwise = false;
    EXPECT_EQ(relative_difference(path("builtin") / "checkpoint.npz", path("spec") / "checkpoint.npz", &bitwise), 0.0);
    EXPECT_TRUE(bitwise);
}

// Over 2 ranks the activations.csv rows are the statistics of the run's model (rank 0's, which the
// checkpoint holds) on the first test images, as one process computes them from the checkpoint.
TEST_F(DistributedTrain, RecordedActivationsAreTheCheckpointsOnTheFirstTestImages) {
    const fs::path out = path("activations");
    const auto run = run_command(on_ranks(2, train(out, "--record-activations bn1,fc1")));
    ASSERT_EQ(run.status, 0) << run.output;
    const auto rows = xgrad::read_activations_csv(out / "activations.csv");
    ASSERT_EQ(rows.size(), 2u) << "one evaluation (the epoch's 4 steps), two layers";

    xgrad::ModelConfig config;
    config.sync_bn = true;
    xgrad::Rng rng(0);
    auto model = xgrad::make_model(config, rng);
    xgrad::load_checkpoint(out / "checkpoint.npz", *model);
    model->set_step(rows[0].step);
    const xgrad::Dataset test = xgrad::load_dataset("synthetic", xgrad::Split::test, {.synthetic_size = 64, .synthetic_seed = 0});
    const auto expected = xgrad::activation_statistics(*model, {"bn1", "fc1"}, test.images);
    for (std::size_t i = 0; i < rows.size(); ++i) {
        SCOPED_TRACE(rows[i].layer);
        EXPECT_EQ(rows[i].step, 4u);
        EXPECT_EQ(rows[i].layer, expected[i].layer);
        EXPECT_NEAR(rows[i].mean, expected[i].mean, 1e-6);
        EXPECT_NEAR(rows[i].std, expected[i].std, 1e-6);
        EXPECT_NEAR(rows[i].p50, expected[i].p50, 1e-6);
        EXPECT_GT(rows[i].std, 0.0);
    }
}

TEST_F(DistributedTrain, ResumingWithAnotherNumberOfRanksIsRefused) {
    const fs::path out = path("run");
    ASSERT_EQ(run_command(on_ranks(2, train(out, "--steps 20"))).status, 0);
    fs::remove(out / "summary.json");  // as if stopped after its last checkpoint
    const auto alone = run_command(train(out, "--steps 20"));
    EXPECT_NE(alone.status, 0);
    EXPECT_NE(alone.output.find("checkpoint.npz was written by a run over 2 rank(s), and this one has 1: resume it "
                                "with mpirun -np 2"),
              std::string::npos)
        << alone.output;
    const auto three = run_command(on_ranks(3, train(out, "--steps 20")));
    EXPECT_NE(three.status, 0);
    // Every rank refuses; the first to abort may end the others before they print.
    EXPECT_NE(three.output.find(" of 3: " + out.string() + "/checkpoint.npz was written by a run over 2 rank(s), and "
                                "this one has 3"),
              std::string::npos)
        << three.output;
    EXPECT_EQ(run_command(on_ranks(2, train(out, "--steps 20"))).status, 0) << "the right number of ranks resumes";
}

std::string experiment(const std::string& name, const fs::path& results, const std::string& more = "") {
    return std::string(XGRAD_CLI) + " experiment " + name + " --profile quick --results " + results.string() + " " + more;
}

// A metrics.csv without its seconds column.
std::string without_seconds(const std::string& csv) {
    std::string out;
    std::istringstream lines(csv);
    std::size_t seconds = 0;  // the column's index, from the header
    for (std::string line; std::getline(lines, line);) {
        std::vector<std::string> cells;
        std::istringstream fields(line);
        for (std::string cell; std::getline(fields, cell, ',');) cells.push_back(cell);
        if (out.empty()) seconds = static_cast<std::size_t>(std::find(cells.begin(), cells.end(), "seconds") - cells.begin());
        if (seconds < cells.size()) cells.erase(cells.begin() + static_cast<std::ptrdiff_t>(seconds));
        for (const auto& cell : cells) out += cell + ",";
        out += "\n";
    }
    return out;
}

// A run's config.json or summary.json without what depends on the machine: seconds and threads.
nlohmann::json without_timing(nlohmann::json j) {
    j.erase("seconds");
    j.erase("threads");
    if (j.contains("config")) j["config"].erase("threads");
    return j;
}

// Expects every file of the sweep under `expected` in `actual` with the same contents, times apart
// (the run locks hold their writer's pid), but for those listed in `differing`, and at least a run
// directory's four files for each of `runs`.
void expect_same_results(const fs::path& expected, const fs::path& actual, std::size_t runs,
                         const std::vector<fs::path>& differing = {}) {
    std::size_t files = 0;
    for (const auto& entry : fs::recursive_directory_iterator(expected)) {
        if (!entry.is_regular_file() || entry.path().filename() == "run.lock") continue;
        const fs::path relative = fs::relative(entry.path(), expected), other = actual / relative;
        if (std::ranges::find(differing, relative) != differing.end()) continue;
        SCOPED_TRACE(relative.string());
        ASSERT_TRUE(fs::exists(other));
        ++files;
        const std::string name = relative.filename().string();
        if (name == "checkpoint.npz") {
            bool bitwise = false;
            (void)relative_difference(entry.path(), other, &bitwise);
            EXPECT_TRUE(bitwise);
        } else if (name == "metrics.csv") {
            EXPECT_EQ(without_seconds(xgrad::read_regular_file(entry.path())), without_seconds(xgrad::read_regular_file(other)));
        } else if (name == "config.json" || name == "summary.json") {
            EXPECT_EQ(without_timing(nlohmann::json::parse(xgrad::read_regular_file(entry.path()))),
                      without_timing(nlohmann::json::parse(xgrad::read_regular_file(other))));
        } else {  // claims, plots and their data: bitwise
            EXPECT_TRUE(xgrad::read_regular_file(entry.path()) == xgrad::read_regular_file(other));
        }
    }
    EXPECT_GE(files, 4 * runs);
}

// Every driver's runs dealt out over 2 ranks (and one driver's 8 runs over 3), each rank training
// whole runs: the results equal those of one process, and rank 0 alone prints the summary. Only
// batch-size's claims differ: over 2 ranks it adds its data-parallel arms (the test below).
TEST_F(DistributedTrain, AnExperimentOverRanksEqualsOneProcess) {
    const auto alone = run_command(experiment("all", path("alone"), "--jobs 2"));
    ASSERT_EQ(alone.status, 0) << alone.output;
    const auto two = run_command(on_ranks(2, experiment("all", path("two"))));
    ASSERT_EQ(two.status, 0) << two.output;
    const fs::path batch_size_claims = fs::path("batch-size") / "claims.json";
    expect_same_results(path("alone"), path("two"), 80, {batch_size_claims});
    // batch-size's own claims and first table are one process's; the two ranks add rows after them.
    const auto alone_claims = nlohmann::json::parse(xgrad::read_regular_file(path("alone") / batch_size_claims));
    const auto two_claims = nlohmann::json::parse(xgrad::read_regular_file(path("two") / batch_size_claims));
    ASSERT_EQ(two_claims.at("claims").size(), alone_claims.at("claims").size() + 2);
    for (std::size_t k = 0; k < alone_claims.at("claims").size(); ++k) {
        EXPECT_EQ(two_claims.at("claims")[k], alone_claims.at("claims")[k]) << k;
    }
    EXPECT_EQ(two_claims.at("tables")[0], alone_claims.at("tables")[0]);
    EXPECT_NE(two.output.find("on rank 1, final test accuracy"), std::string::npos) << two.output;
    for (const char* driver :
         {"convergence", "distributions", "learning-rate", "init", "regularization", "noisy-bn", "depth", "saturation"}) {
        const std::string ended = std::string("== ") + driver + ": ";
        const auto first = two.output.find(ended);
        EXPECT_NE(first, std::string::npos) << two.output;
        EXPECT_EQ(two.output.find(ended, first + 1), std::string::npos) << "printed by one rank only: " << driver;
    }
    const auto three = run_command(on_ranks(3, experiment("init", path("three"))));
    ASSERT_EQ(three.status, 0) << three.output;
    expect_same_results(path("alone") / "init", path("three") / "init", 8);
}

// batch-size over 2 ranks also trains its data-parallel arms, every rank together: each such run
// is `xgrad train` under mpirun with the arm's flags, to the bit, and adds two claims; alone, the
// driver says they need mpirun.
TEST_F(DistributedTrain, BatchSizeOverTwoRanksTrainsSyncBatchNormAgainstLocalBatchNorm) {
    const auto two = run_command(on_ranks(2, experiment("batch-size", path("two"))));
    ASSERT_EQ(two.status, 0) << two.output;
    const fs::path arms = path("two") / "batch-size";
    for (const char* arm : {"sync-batch-w2-b16", "local-batch-w2-b16"}) {
        for (const char* seed : {"seed0", "seed1"}) {
            const auto summary = nlohmann::json::parse(xgrad::read_regular_file(arms / arm / seed / "summary.json"));
            EXPECT_EQ(summary.at("world_size"), 2) << arm << "/" << seed;
        }
    }
    EXPECT_NE(two.output.find("sync-batch-w2-b16/seed1: finished over 2 ranks"), std::string::npos) << two.output;
    // The quick plan's arm: 64 synthetic images, a global batch of 2 x 16, lr 0.1 * 32 / 256, one epoch.
    const fs::path by_hand = path("by-hand");
    const auto trained = run_command(on_ranks(
        2, std::string(XGRAD_CLI) + " train --model seed-cnn --dataset synthetic --synthetic-size 64 --optimizer sgd "
                                    "--momentum 0.9 --batch 32 --lr 0.0125 --steps 2 --eval-every 2 --eval-samples 0 "
                                    "--seed 1 --sync-bn --threads 1 --out " + by_hand.string()));
    ASSERT_EQ(trained.status, 0) << trained.output;
    bool bitwise = false;
    (void)relative_difference(arms / "sync-batch-w2-b16" / "seed1" / "checkpoint.npz", by_hand / "checkpoint.npz", &bitwise);
    EXPECT_TRUE(bitwise) << "the sweep's SyncBN run differs from xgrad train's";
    EXPECT_EQ(without_timing(nlohmann::json::parse(xgrad::read_regular_file(arms / "sync-batch-w2-b16" / "seed1" / "config.json"))),
              without_timing(nlohmann::json::parse(xgrad::read_regular_file(by_hand / "config.json"))));

    const auto claims_of = [](const fs::path& results) {
        std::string claims;
        const auto json = nlohmann::json::parse(xgrad::read_regular_file(results / "batch-size" / "claims.json"));
        for (const auto& c : json.at("claims")) claims += c.at("claim").get<std::string>() + "\n";
        return std::pair{claims, json.at("setup").get<std::string>()};
    };
    const auto [two_claims, two_setup] = claims_of(path("two"));
    EXPECT_NE(two_claims.find("SyncBN over 2 ranks of 16 images each errs less than BN normalizing each rank's own"),
              std::string::npos) << two_claims;
    EXPECT_NE(two_claims.find("SyncBN over 2 ranks of 16 images each trains as one process's BN at their global batch of 32"),
              std::string::npos) << two_claims;

    const auto alone = run_command(experiment("batch-size", path("alone")));
    ASSERT_EQ(alone.status, 0) << alone.output;
    EXPECT_FALSE(fs::exists(path("alone") / "batch-size" / "sync-batch-w2-b16"));
    const auto [alone_claims, alone_setup] = claims_of(path("alone"));
    EXPECT_EQ(alone_claims.find("SyncBN"), std::string::npos) << alone_claims;
    EXPECT_NE(alone_setup.find("train only over 2 ranks: `mpirun -np 2 xgrad experiment batch-size`; this sweep ran over 1."),
              std::string::npos) << alone_setup;
}

TEST_F(DistributedTrain, AKilledRankEndsTheJobAndTheRerunResumesToTheSameBits) {
    const fs::path straight = path("straight"), killed = path("killed");
    ASSERT_EQ(run_command(on_ranks(2, train(straight, "--steps 40"))).status, 0);
    // Rank processes are the ones whose command line starts with the binary (mpirun's starts with
    // mpirun): one of them is killed once the first checkpoint is written.
    const std::string rank_pattern = "^" + std::string(XGRAD_CLI) + " train .*--out " + killed.string() + " ";
    const auto stopped = run_command(
        "(" + on_ranks(2, train(killed, "--steps 40")) + " 2>&1) & job=$!; " +
        "for i in $(seq 600); do [ -f " + (killed / "checkpoint.npz").string() + " ] && break; sleep 0.05; done; " +
        "kill -9 $(pgrep -f '" + rank_pattern + "' | tail -n 1); wait $job");
    EXPECT_NE(stopped.status, 0) << stopped.output;
    EXPECT_NE(stopped.output.find("exited on signal 9"), std::string::npos) << stopped.output;
    ASSERT_TRUE(fs::exists(killed / "checkpoint.npz"));
    ASSERT_FALSE(fs::exists(killed / "summary.json")) << "the run ended before a rank was killed";
    const auto rerun = run_command(on_ranks(2, train(killed, "--steps 40")));
    ASSERT_EQ(rerun.status, 0) << rerun.output;
    EXPECT_NE(rerun.output.find("resuming at step"), std::string::npos) << rerun.output;
    bool bitwise = false;
    (void)relative_difference(straight / "checkpoint.npz", killed / "checkpoint.npz", &bitwise);
    EXPECT_TRUE(bitwise) << "the resumed run's checkpoint differs from the uninterrupted run's";
}

}  // namespace
