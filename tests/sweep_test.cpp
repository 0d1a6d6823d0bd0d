// `xgrad sweep SPEC.json`: the grid's expansion into arms and runs, in order and named; every error
// of a spec naming the file and the key (or the arm), before anything is written; the specs of
// experiments/specs/ against the drivers' own runs, configuration by configuration; and a small
// sweep through the command line whose summary is checked against its run directories, then run
// again, reusing every run and rewriting the same summary, alone and over 2 ranks under mpirun; a
// run of another build refused, then trained again with --rerun-stale.
#include <sys/wait.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "experiments/drivers.hpp"
#include "experiments/metrics_log.hpp"
#include "experiments/model_spec.hpp"
#include "experiments/provenance.hpp"
#include "experiments/sweep.hpp"
#include "tests/error_message.hpp"
#include "tests/run_command.hpp"
#include "tests/temp_dir.hpp"

namespace {

namespace fs = std::filesystem;
using namespace xgrad;
using xgrad_test::error_of;
using xgrad_test::run_command;

std::string read_file(const fs::path& path) {
    std::ifstream in(path, std::ios::binary);
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
}

void write_file(const fs::path& path, const std::string& text) { std::ofstream(path, std::ios::binary) << text; }

// A spec of paper-mlp on the synthetic data set with `fields` (the text of further top-level keys).
std::string spec_text(const std::string& fields) {
    return R"({"name": "tiny", "seeds": [0, 1],
  "base": {"model": "paper-mlp", "dataset": "synthetic", "synthetic-size": 64, "batch": 16, "steps": 4, "eval-every": 2,
           "optimizer": "sgd"})" +
           (fields.empty() ? "" : ",\n  " + fields) + "}\n";
}

class SweepSpec : public xgrad_test::TempDir {
protected:
    fs::path write_spec(const std::string& text) const {
        const fs::path file = path("spec.json");
        write_file(file, text);
        return file;
    }
    // The message of the error that load_sweep raises for `text`, after "<file>: ".
    std::string error_for(const std::string& text) const {
        const fs::path file = write_spec(text);
        const std::string error = xgrad_test::error_of<std::invalid_argument>([&] { load_sweep(file); });
        EXPECT_EQ(error.rfind(file.string() + ": ", 0), 0u) << error;
        return error.substr(std::min(error.size(), file.string().size() + 2));
    }
};

TEST_F(SweepSpec, ArmsAreTheGridsProductFirstKeyOutermostSeedsInnermost) {
    const Sweep sweep = load_sweep(write_spec(spec_text(R"("grid": {"norm": ["batch", "none"], "lr": [0.1, 0.5, 3]},
  "seeds": [5, 2])")));
    const std::vector<std::string> names{"norm=batch,lr=0.1", "norm=batch,lr=0.5", "norm=batch,lr=3",
                                         "norm=none,lr=0.1",  "norm=none,lr=0.5",  "norm=none,lr=3"};
    ASSERT_EQ(sweep.arms.size(), names.size());
    for (std::size_t i = 0; i < names.size(); ++i) {
        EXPECT_EQ(sweep.arms[i].name, names[i]);
        EXPECT_EQ(sweep.arms[i].config.model.norm, i < 3 ? Norm::batch : Norm::none);
        EXPECT_EQ(sweep.arms[i].config.lr, (std::vector<double>{0.1, 0.5, 3})[i % 3]);
        EXPECT_EQ(sweep.arms[i].config.steps, 4u);
        EXPECT_EQ(sweep.arms[i].config.dataset, "synthetic");
    }
    EXPECT_EQ(sweep.grid_keys, (std::vector<std::string>{"norm", "lr"}));
    const std::vector<RunSpec> runs = sweep.runs();
    ASSERT_EQ(runs.size(), 12u);
    EXPECT_EQ(runs[0].name, "norm=batch,lr=0.1/seed5");
    EXPECT_EQ(runs[1].name, "norm=batch,lr=0.1/seed2");
    EXPECT_EQ(runs[1].config.seed, 2u);
    EXPECT_EQ(runs[11].name, "norm=none,lr=3/seed2");
    // The default metrics.
    ASSERT_EQ(sweep.metrics.size(), 2u);
    EXPECT_EQ(sweep.metrics[0].name(), "final_test_acc");
    EXPECT_EQ(sweep.metrics[1].name(), "best_test_acc");
}

TEST_F(SweepSpec, AnEmptyGridIsOneArmAndBooleansGiveOrOmitAFlag) {
    const Sweep with = load_sweep(write_spec(R"({"name": "b", "base": {"noisy-bn": true, "model": "seed-cnn"}, "seeds": [0]})"));
    ASSERT_EQ(with.arms.size(), 1u);
    EXPECT_EQ(with.arms[0].name, "base");
    EXPECT_TRUE(with.arms[0].config.model.noisy_bn);
    EXPECT_EQ(with.arms[0].config.model.name, "seed-cnn");
    const Sweep grid = load_sweep(write_spec(R"({"name": "b", "grid": {"noisy-bn": [false, true]}, "seeds": [0]})"));
    ASSERT_EQ(grid.arms.size(), 2u);
    EXPECT_EQ(grid.arms[0].name, "noisy-bn=false");
    EXPECT_FALSE(grid.arms[0].config.model.noisy_bn);
    EXPECT_TRUE(grid.arms[1].config.model.noisy_bn);
}

MetricsRow evaluation(std::size_t step, double test_acc) {
    MetricsRow row;
    row.step = step;
    row.test_acc = test_acc;
    return row;
}

TEST_F(SweepSpec, MetricsAreNamedAndComputedOverTheRuns) {
    const Sweep sweep = load_sweep(write_spec(spec_text(R"("metrics": [{"steps_to": 0.8}, "best_test_acc"])")));
    ASSERT_EQ(sweep.metrics.size(), 2u);
    EXPECT_EQ(sweep.metrics[0].name(), "steps_to_0.8");
    RunResult reached, late, never, diverged;
    reached.rows = {evaluation(2, 0.5), evaluation(4, 0.81), evaluation(6, 0.7)};
    late.rows = {evaluation(2, 0.5), evaluation(4, 0.6), evaluation(6, 0.8)};
    never.rows = {evaluation(2, 0.5)};
    diverged.rows = {evaluation(2, 0.9)};
    diverged.outcome.status = "diverged";
    const std::vector<const RunResult*> runs{&reached, &late, &never, &diverged};
    EXPECT_EQ(sweep.metrics[0].values(runs), (std::vector<double>{4, 6}));  // never reached, or diverged: not counted
    EXPECT_EQ(sweep.metrics[1].values(runs), (std::vector<double>{0.81, 0.8, 0.5, 0.9}));
}

TEST_F(SweepSpec, ErrorsNameTheFileAndTheKey) {
    const std::vector<std::pair<std::string, std::string>> cases{
        {spec_text(R"("grid": {"lrr": [0.1]})"), "grid.lrr: unknown flag --lrr (the flags of xgrad train: model, model-spec, dataset, norm, bn,"},
        {spec_text(R"("grid": {"lr": [0.1, 0.5, -1]})"), "grid.lr[2]: --lr: expected a finite number > 0; got -1"},
        {spec_text(R"("grid": {"eval-samples": [16, 2.5]})"),
         "grid.eval-samples[1]: --eval-samples: expected a whole number from 0 to 1000000; got 2.5"},
        {spec_text(R"("grid": {"norm": ["batch", "fancy"]})"), "grid.norm[1]: --norm: fancy not in"},
        {spec_text(R"("grid": {"lr": []})"), "grid.lr: an empty list (a grid key needs at least one value)"},
        {spec_text(R"("grid": {"lr": 0.1})"), "grid.lr: expected a list of values; got 0.1"},
        {spec_text(R"("grid": {"lr": [0.1, [0.5]]})"), "grid.lr[1]: --lr takes a number or a string; got a list"},
        {spec_text(R"("grid": {"lr": [0.1, 0.1]})"), "grid.lr[1]: the same value as grid.lr[0]"},
        {spec_text(R"("grid": {"steps": [8]})"), "grid.steps: also in base; give a key in base or in the grid, not both"},
        {spec_text(R"("grid": [1])"), "grid: expected an object of lists of values; got a list"},
        {R"({"name": "x", "seeds": [0], "base": {"lr": {"value": 1}}})", "base.lr: --lr takes a number or a string; got an object"},
        {R"({"name": "x", "seeds": [0], "base": {"lr": null}})", "base.lr: --lr takes a number or a string; got null"},
        {R"({"name": "x", "seeds": [0], "base": {"lr": true}})", "base.lr: --lr takes a number or a string; got true"},
        {R"({"name": "x", "seeds": [0], "base": {"noisy-bn": 1}})",
         "base.noisy-bn: --noisy-bn takes no value: expected true (given) or false (omitted); got 1"},
        {R"({"name": "x", "seeds": [0], "base": {"out": "runs"}})", "base.out: --out is not a sweep key: the sweep puts each run in <results>/<name>/<arm>/seed<k>"},
        {spec_text(R"("grid": {"threads": [1, 2]})"), "grid.threads: --threads is not a sweep key: --jobs sets how many runs train at once"},
        {spec_text(R"("grid": {"seed": [1, 2]})"), "grid.seed: --seed is not a sweep key: the list \"seeds\" gives the runs' seeds"},
        {spec_text(R"("grid": {"help": [true]})"), "grid.help: unknown flag --help"},
        {spec_text(R"("seed": 3)"), "seed: unknown key (the keys of a spec: name, description, base, grid, seeds, metrics)"},
        {R"({"name": "x"})", "seeds: missing: the list of the runs' seeds, such as [0, 1, 2]"},
        {R"({"name": "x", "seeds": []})", "seeds: expected a non-empty list of seeds; got a list"},
        {R"({"name": "x", "seeds": [0, "1"]})", "seeds[1]: expected a whole number; got \"1\""},
        {R"({"name": "x", "seeds": [0, -1]})", "seeds[1]: --seed: expected a whole number from 0 to 4294967295; got -1"},
        {R"({"name": "x", "seeds": [3, 0, 3]})", "seeds[2]: the same seed as seeds[0]"},
        {R"({"seeds": [0]})", "name: missing: the sweep's directory under --results"},
        {R"({"name": "../x", "seeds": [0]})", "name: expected the sweep's directory name (letters, digits and . _ + - = ,); got \"../x\""},
        {R"({"name": "x", "seeds": [0], "metrics": ["final_acc"]})",
         "metrics[0]: unknown metric \"final_acc\" (the metrics: \"final_test_acc\", \"best_test_acc\", {\"steps_to\": ACCURACY})"},
        {R"({"name": "x", "seeds": [0], "metrics": [{"steps_to": 80}]})", "metrics[0].steps_to: expected a test accuracy in (0, 1]; got 80"},
        {R"({"name": "x", "seeds": [0], "metrics": ["best_test_acc", "best_test_acc"]})", "metrics[1]: the same metric as metrics[0]"},
        {R"({"name": "x", "seeds": [0], "description": 5})", "description: expected a string; got 5"},
        // Settings wrong only together name the arm.
        {R"({"name": "x", "seeds": [0], "base": {"norm-groups": 2}, "grid": {"norm": ["group", "none"]}})",
         "arm norm=none: --norm-groups applies to --norm group only, not to --norm none"},
        {spec_text(R"("grid": {"epochs": [2]})"), "arm epochs=2: --epochs excludes --steps"},
        {spec_text(R"("grid": {"norm": ["instance"]})"), "arm norm=instance: "},
        {R"({"name": "x", "seeds": [0], "base": {"optimizer": "adam", "momentum": 0.9}})", "arm base: --momentum"},
        // relu1 is a layer of the seed CNN without BN, and is fused into bn1 with it.
        {R"({"name": "x", "seeds": [0], "base": {"model": "seed-cnn", "record-activations": "relu1"}, "grid": {"norm": ["none", "batch"]}})",
         "arm norm=batch: --record-activations: "},
    };
    for (const auto& [text, message] : cases) {
        SCOPED_TRACE(text);
        EXPECT_EQ(error_for(text).rfind(message, 0), 0u) << error_for(text) << "\nexpected: " << message;
    }
    // 400 learning rates times 300 seeds: a typo, not an experiment.
    std::string rates, seeds;
    for (int i = 1; i <= 400; ++i) rates += (i > 1 ? ", " : "") + std::to_string(i);
    for (int i = 0; i < 300; ++i) seeds += (i > 0 ? ", " : "") + std::to_string(i);
    EXPECT_EQ(error_for(R"({"name": "x", "grid": {"lr": [)" + rates + R"(]}, "seeds": [)" + seeds + "]}"),
              "grid: with the seeds, more than 100000 runs (300 seeds)");
    // The flags it lists are the sweep keys.
    const std::string unknown = error_for(spec_text(R"("grid": {"lrr": [0.1]})"));
    EXPECT_NE(unknown.find(", synthetic-size"), std::string::npos) << unknown;
    EXPECT_EQ(unknown.find("seed,"), std::string::npos) << unknown;
    EXPECT_EQ(unknown.find("threads"), std::string::npos) << unknown;
}

TEST_F(SweepSpec, ASpecThatIsNotAJsonObjectIsAnErrorNamingTheFile) {
    const fs::path file = write_spec("[1, 2]");
    EXPECT_EQ(error_of<std::runtime_error>([&] { load_sweep(file); }),
              file.string() + ": expected a JSON object ({...}), found array");
    EXPECT_NE(error_of<std::runtime_error>([&] { load_sweep(path("missing.json")); }).find("missing.json"), std::string::npos);
}

// The shipped specs give the drivers' runs of the paper profile: the same configurations, field by
// field, in the same order.
void expect_driver_runs(const std::string& spec, const std::vector<RunSpec>& driver) {
    SCOPED_TRACE(spec);
    const std::vector<RunSpec> runs = load_sweep(fs::path(XGRAD_SOURCE_DIR) / "experiments/specs" / spec).runs();
    ASSERT_EQ(runs.size(), driver.size());
    for (std::size_t i = 0; i < runs.size(); ++i) {
        EXPECT_EQ(to_json(runs[i].config), to_json(driver[i].config)) << runs[i].name << " against " << driver[i].name;
    }
}

TEST(SweepDrivers, ShippedSpecsGiveTheDriversConfigurations) {
    expect_driver_runs("init.json", init_runs(Profile::paper));
    expect_driver_runs("learning-rate-paper-mlp.json", learning_rate_runs(Profile::paper, "paper-mlp"));
}

// A model spec named in a sweep spec is read from beside it, wherever the sweep runs from; the
// arm is named as the spec wrote it.
TEST(SweepShipped, ModelSpecsAreFoundBesideTheSweepSpec) {
    const fs::path specs = fs::path(XGRAD_SOURCE_DIR) / "experiments/specs";
    const Sweep sweep = load_sweep(specs / "bn-placement.json");
    ASSERT_EQ(sweep.arms.size(), 4u);
    EXPECT_EQ(sweep.arms[0].name, "model-spec=models_seed-cnn.json,norm=batch");
    EXPECT_EQ(sweep.arms[0].config.model.spec, xgrad::load_model_spec(specs / "models/seed-cnn.json"));
    EXPECT_EQ(sweep.arms[3].config.model.spec, xgrad::load_model_spec(specs / "models/cnn-bn-after-relu.json"));
    EXPECT_EQ(sweep.arms[3].config.model.norm, xgrad::Norm::group);
}

// ---- through the command line

std::string xgrad(const std::string& args) { return "timeout 300 " + std::string(XGRAD_CLI) + " " + args; }

bool exited_with(int status, int code) { return WIFEXITED(status) && WEXITSTATUS(status) == code; }

struct CsvTable {
    std::vector<std::string> header;
    std::vector<std::vector<std::string>> rows;
    std::string at(std::size_t row, const std::string& column) const {
        const auto it = std::find(header.begin(), header.end(), column);
        EXPECT_NE(it, header.end()) << column;
        return it == header.end() ? "" : rows.at(row).at(static_cast<std::size_t>(it - header.begin()));
    }
};

// summary.csv: fields with a comma are quoted, without a quote inside (the arm names).
CsvTable read_csv(const fs::path& path) {
    CsvTable table;
    std::istringstream in(read_file(path));
    for (std::string line; std::getline(in, line);) {
        std::vector<std::string> fields{""};
        bool quoted = false;
        for (char c : line) {
            if (c == '"') quoted = !quoted;
            else if (c == ',' && !quoted) fields.emplace_back();
            else fields.back() += c;
        }
        if (table.header.empty()) table.header = fields;
        else table.rows.push_back(fields);
    }
    return table;
}

double number(const std::string& text) {
    double value = NAN;
    std::from_chars(text.data(), text.data() + text.size(), value);
    return value;
}

class SweepCli : public xgrad_test::TempDir {
protected:
    void SetUp() override {
        TempDir::SetUp();
        spec = path("tiny.json");
        write_file(spec, spec_text(R"("grid": {"norm": ["batch", "none"]}, "metrics": ["final_test_acc", "best_test_acc", {"steps_to": 0.1}])"));
        results = path("results");
    }
    fs::path spec, results;
};

// Mean and sample sd, computed here from the run directories' metrics.csv.
void expect_column(const CsvTable& csv, std::size_t row, const std::string& metric, const std::vector<double>& values) {
    SCOPED_TRACE(metric);
    if (values.empty()) {  // no run reached the target
        for (const char* column : {"_mean", "_sd", "_n"}) EXPECT_EQ(csv.at(row, metric + column), "");
        return;
    }
    const double n = static_cast<double>(values.size());
    double mean = 0, sq = 0;
    for (double v : values) mean += v;
    mean /= n;
    for (double v : values) sq += (v - mean) * (v - mean);
    EXPECT_DOUBLE_EQ(number(csv.at(row, metric + "_mean")), mean);
    EXPECT_NEAR(number(csv.at(row, metric + "_sd")), values.size() > 1 ? std::sqrt(sq / (n - 1)) : 0.0, 1e-15);
    EXPECT_EQ(csv.at(row, metric + "_n"), std::to_string(values.size()));
}

TEST_F(SweepCli, SummarizesTheRunDirectoriesAndReusesThemWhenRunAgain) {
    const auto first = run_command(xgrad("sweep '" + spec.string() + "' --results '" + results.string() + "' --jobs 2"));
    ASSERT_TRUE(exited_with(first.status, 0)) << first.output;
    const fs::path dir = results / "tiny";
    EXPECT_NE(first.output.find("| norm | final_test_acc | best_test_acc | steps_to_0.1 | diverged |"), std::string::npos)
        << first.output;
    const CsvTable csv = read_csv(dir / "summary.csv");
    EXPECT_EQ(csv.header, (std::vector<std::string>{"arm", "norm", "runs", "diverged", "final_test_acc_mean", "final_test_acc_sd",
                                                   "final_test_acc_n", "best_test_acc_mean", "best_test_acc_sd", "best_test_acc_n",
                                                   "steps_to_0.1_mean", "steps_to_0.1_sd", "steps_to_0.1_n"}));
    ASSERT_EQ(csv.rows.size(), 2u);
    const std::string md = read_file(dir / "summary.md");
    for (std::size_t arm = 0; arm < 2; ++arm) {
        const std::string norm = arm == 0 ? "batch" : "none";
        EXPECT_EQ(csv.at(arm, "arm"), "norm=" + norm);
        EXPECT_EQ(csv.at(arm, "norm"), norm);
        EXPECT_EQ(csv.at(arm, "runs"), "2");
        EXPECT_EQ(csv.at(arm, "diverged"), "0");
        std::vector<double> final_acc, best_acc, steps_to;
        for (int seed : {0, 1}) {
            const auto rows = read_metrics_csv(dir / ("norm=" + norm) / ("seed" + std::to_string(seed)) / "metrics.csv");
            ASSERT_EQ(rows.size(), 2u);  // 4 steps, an evaluation every 2
            final_acc.push_back(rows.back().test_acc);
            best_acc.push_back(std::max(rows[0].test_acc, rows[1].test_acc));
            const auto reached = std::find_if(rows.begin(), rows.end(), [](const MetricsRow& r) { return r.test_acc >= 0.1; });
            if (reached != rows.end()) steps_to.push_back(static_cast<double>(reached->step));
        }
        expect_column(csv, arm, "final_test_acc", final_acc);
        expect_column(csv, arm, "best_test_acc", best_acc);
        expect_column(csv, arm, "steps_to_0.1", steps_to);
        const std::string row = "| " + norm + " | " + format_spread(spread_of(final_acc)) + " | " +
                                format_spread(spread_of(best_acc)) + " | " + format_spread(spread_of(steps_to), 0) + " | 0 of 2 |";
        EXPECT_NE(md.find(row), std::string::npos) << row << "\n" << md;
    }
    EXPECT_EQ(read_file(dir / "spec.json"), read_file(spec));
    EXPECT_GT(fs::file_size(dir / "test_accuracy.png"), 0u);
    const auto plotted = nlohmann::json::parse(read_file(dir / "test_accuracy.png.json"));
    EXPECT_EQ(plotted["curves"].size(), 2u);

    const std::string csv_bytes = read_file(dir / "summary.csv");
    const auto again = run_command(xgrad("sweep '" + spec.string() + "' --results '" + results.string() + "'"));
    ASSERT_TRUE(exited_with(again.status, 0)) << again.output;
    for (const std::string run : {"norm=batch/seed0", "norm=batch/seed1", "norm=none/seed0", "norm=none/seed1"}) {
        EXPECT_NE(again.output.find(run + ": finished (earlier)"), std::string::npos) << again.output;
    }
    EXPECT_EQ(read_file(dir / "summary.csv"), csv_bytes);
    EXPECT_EQ(read_file(dir / "summary.md"), md);
}

TEST_F(SweepCli, ARunOfAnotherConfigurationIsRefusedNamingTheSpecAndTheArm) {
    ASSERT_TRUE(exited_with(run_command(xgrad("sweep '" + spec.string() + "' --results '" + results.string() + "'")).status, 0));
    const std::string metrics = read_file(results / "tiny/norm=none/seed1/metrics.csv");
    // The same name and arms, two more steps.
    const fs::path changed = path("changed.json");
    write_file(changed, std::string(std::regex_replace(read_file(spec), std::regex("\"steps\": 4"), "\"steps\": 6")));
    const auto refused = run_command(xgrad("sweep '" + changed.string() + "' --results '" + results.string() + "'"));
    EXPECT_TRUE(exited_with(refused.status, 1)) << refused.output;
    EXPECT_NE(refused.output.find("xgrad: error: " + changed.string() + ": arm norm=batch: " +
                                  (results / "tiny/norm=batch/seed0/config.json").string() +
                                  " belongs to a run with another configuration ('steps' was 4, now 6)"),
              std::string::npos)
        << refused.output;
    EXPECT_EQ(read_file(results / "tiny/norm=none/seed1/metrics.csv"), metrics);
    EXPECT_EQ(read_file(results / "tiny/spec.json"), read_file(spec));
}

// A run that another build made is refused by the command line, naming it, and trained again
// with --rerun-stale, the runs of this build reused.
TEST_F(SweepCli, ARunOfAnotherBuildIsRefusedOrWithRerunStaleTrainedAgain) {
    const std::string sweep = xgrad("sweep '" + spec.string() + "' --results '" + results.string() + "'");
    ASSERT_TRUE(exited_with(run_command(sweep).status, 0));
    const fs::path config = results / "tiny/norm=none/seed1/config.json";
    nlohmann::json recorded = nlohmann::json::parse(read_file(config));
    recorded["provenance"]["commit"] = std::string(40, 'c');
    recorded["provenance"]["dirty"] = false;
    write_file(config, recorded.dump());
    const auto refused = run_command(sweep);
    EXPECT_TRUE(exited_with(refused.status, 1)) << refused.output;
    EXPECT_NE(refused.output.find("\n  build " + std::string(40, 'c') + ", then build " + this_build() + ": norm=none/seed1\n"),
              std::string::npos)
        << refused.output;
    const auto rerun = run_command(sweep + " --rerun-stale");
    ASSERT_TRUE(exited_with(rerun.status, 0)) << rerun.output;
    EXPECT_NE(rerun.output.find("norm=none/seed1: made by build " + std::string(40, 'c')), std::string::npos) << rerun.output;
    EXPECT_EQ(build_of(nlohmann::json::parse(read_file(config))), this_build());
}

TEST_F(SweepCli, ErrorsOfTheCommandWriteNothing) {
    const fs::path bad = path("bad.json");
    write_file(bad, spec_text(R"("grid": {"lr": [0.1, 0.5, -1]})"));
    const auto refused = run_command(xgrad("sweep '" + bad.string() + "' --results '" + results.string() + "'"));
    EXPECT_TRUE(exited_with(refused.status, 1)) << refused.output;
    EXPECT_NE(refused.output.find("xgrad: error: " + bad.string() + ": grid.lr[2]: --lr: expected a finite number > 0; got -1"),
              std::string::npos)
        << refused.output;
    EXPECT_FALSE(fs::exists(results));
    const auto missing = run_command(xgrad("sweep '" + path("none.json").string() + "' --results '" + results.string() + "'"));
    EXPECT_TRUE(exited_with(missing.status, 1)) << missing.output;
    EXPECT_NE(missing.output.find("cannot read " + path("none.json").string()), std::string::npos) << missing.output;
    const auto jobs = run_command(xgrad("sweep '" + spec.string() + "' --jobs 0 --results '" + results.string() + "'"));
    EXPECT_FALSE(exited_with(jobs.status, 0)) << jobs.output;
    EXPECT_NE(jobs.output.find("--jobs: expected the number of runs trained at once, a whole number from 1 to 64; got 0"),
              std::string::npos)
        << jobs.output;
    EXPECT_FALSE(fs::exists(results));
}

// Over 2 ranks: each trains half of the runs; rank 0 writes the same summary as one process.
TEST_F(SweepCli, UnderMpirunTheOutputsAreThoseOfOneProcess) {
    if (run_command("command -v mpirun").status != 0) GTEST_SKIP() << "no mpirun";
    const auto alone = run_command(xgrad("sweep '" + spec.string() + "' --results '" + results.string() + "'"));
    ASSERT_TRUE(exited_with(alone.status, 0)) << alone.output;
    const fs::path spread = path("spread");
    const auto ranks = run_command("OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 timeout 240 mpirun --oversubscribe -np 2 " +
                                   std::string(XGRAD_CLI) + " sweep '" + spec.string() + "' --results '" + spread.string() + "'");
    ASSERT_TRUE(exited_with(ranks.status, 0)) << ranks.output;
    EXPECT_NE(ranks.output.find("on rank 1"), std::string::npos) << ranks.output;
    for (const std::string file : {"summary.csv", "summary.md", "spec.json"}) {
        EXPECT_EQ(read_file(spread / "tiny" / file), read_file(results / "tiny" / file)) << file;
    }
}

}  // namespace
