// The experiment drivers and what they are built from: the model description (its norm names,
// config.json of runs recorded before --norm), the models' layers, metrics.csv's extra columns,
// the spread over seeds and the verdict rule, the probes (percentiles of a unit's input; the
// landscape along the gradient and the internal covariate shift, which must leave the model as they
// found it, measured before the step's update), every driver run in
// its quick profile through the xgrad command line, its outputs checked for shape and sanity, then
// `xgrad report`, and the committed paper-profile runs found finished by the command that made them.
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <limits>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <xtensor/xmath.hpp>
#include <xtensor/xreducer.hpp>

#include "experiments/depth_runs.hpp"
#include "experiments/drivers.hpp"
#include "experiments/experiment.hpp"
#include "experiments/metrics_log.hpp"
#include "experiments/models.hpp"
#include "experiments/npz.hpp"
#include "experiments/plot.hpp"
#include "experiments/probes.hpp"
#include "experiments/provenance.hpp"
#include "experiments/steps_to_target.hpp"
#include "experiments/trainer.hpp"
#include "layers/activations.hpp"
#include "layers/cross_entropy.hpp"
#include "layers/distribution_noise.hpp"
#include "layers/linear.hpp"
#include "layers/normalization/batch_norm.hpp"
#include "tests/error_message.hpp"
#include "tests/run_command.hpp"

namespace {

namespace fs = std::filesystem;
using namespace xgrad;

fs::path fresh_dir(const std::string& name) {
    const fs::path dir = fs::temp_directory_path() / ("xgrad_experiments_test_" + name + "_" + std::to_string(getpid()));
    fs::remove_all(dir);
    fs::create_directories(dir);
    return dir;
}

std::string read_file(const fs::path& path) {
    std::ifstream in(path, std::ios::binary);
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
}

nlohmann::json read_json(const fs::path& path) { return nlohmann::json::parse(read_file(path)); }

TEST(MetricsCsv, ExtraColumnsRoundTrip) {
    const fs::path dir = fresh_dir("metrics");
    std::vector<MetricsRow> rows(2);
    rows[0].step = 10;
    rows[0].test_acc = 0.5;
    rows[0].extra = {{"p15", -1.25}, {"p85", 2.5}};
    rows[1].step = 20;
    rows[1].extra = {{"p15", 0.125}, {"p85", 3.0}};
    const std::string csv = metrics_csv(rows);
    EXPECT_EQ(csv.substr(0, csv.find('\n')), std::string(metrics_header) + ",p15,p85");
    std::ofstream(dir / "m.csv") << csv;
    const auto back = read_metrics_csv(dir / "m.csv");
    ASSERT_EQ(back.size(), 2u);
    EXPECT_EQ(back[0].step, 10u);
    EXPECT_EQ(back[0].test_acc, 0.5);
    EXPECT_EQ(back[0].at("p15"), -1.25);
    EXPECT_EQ(back[1].at("p85"), 3.0);
    EXPECT_THROW(back[1].at("p50"), std::out_of_range);

    rows[1].extra.pop_back();
    EXPECT_THROW(metrics_csv(rows), std::invalid_argument) << "rows with other columns";
    std::ofstream(dir / "bad.csv") << std::string(metrics_header) << ",p15\n10,0,1,1,1,1,0.1,2,x\n";
    try {
        read_metrics_csv(dir / "bad.csv");
        ADD_FAILURE() << "a row with a non-number was read";
    } catch (const std::runtime_error& e) {
        EXPECT_NE(std::string(e.what()).find("bad.csv: line 2"), std::string::npos) << e.what();
    }
    fs::remove_all(dir);
}

// A run begun before a flag existed resumes when the flag is off, and only then.
TEST(TrainConfig, AFlagAbsentFromAnOlderRunMatchesOff) {
    const nlohmann::json older = {{"model", "paper-mlp"}, {"threads", 1}};
    EXPECT_EQ(first_difference(older, {{"model", "paper-mlp"}, {"noisy_bn", false}, {"threads", 2}}), std::nullopt);
    EXPECT_EQ(first_difference({{"model", "paper-mlp"}, {"noisy_bn", false}}, older), std::nullopt);
    EXPECT_EQ(first_difference(older, {{"model", "paper-mlp"}, {"noisy_bn", true}}), "noisy_bn");
    EXPECT_EQ(first_difference(older, {{"model", "seed-cnn"}}), "model");
    EXPECT_EQ(first_difference(older, {{"model", "paper-mlp"}, {"lr", 0.1}}), "lr") << "only a false flag matches absence";
    // A list flag: absent is the empty list.
    EXPECT_EQ(first_difference(older, {{"model", "paper-mlp"}, {"record_activations", nlohmann::json::array()}}), std::nullopt);
    EXPECT_EQ(first_difference(older, {{"model", "paper-mlp"}, {"record_activations", {"bn1"}}}), "record_activations");
}

// Runs begun before --norm recorded "bn": true/false; read in today's keys, each matches the
// configuration that makes the same choice, and only that one.
TEST(TrainConfig, ARecordedBnReadsAsNormAndMatchesTheSameChoice) {
    TrainConfig c = paper_mlp_config("fashion-mnist", Norm::batch);
    nlohmann::json recorded = to_json(c);
    recorded.erase("norm");
    recorded["bn"] = true;
    EXPECT_EQ(with_current_keys(recorded), to_json(c));
    c.model.norm = Norm::none;
    EXPECT_EQ(first_difference(with_current_keys(recorded), to_json(c)), "norm");
    recorded["bn"] = false;
    EXPECT_EQ(first_difference(with_current_keys(recorded), to_json(c)), std::nullopt);
    EXPECT_EQ(with_current_keys(to_json(c)), to_json(c)) << "a config.json with norm is read as it is";
}

TEST(ModelConfig, EveryNormHasANameThatParsesBackToIt) {
    EXPECT_EQ(norm_names(),
              (std::vector<std::string>{"batch", "batch-renorm", "ghost", "group", "layer", "instance", "frn", "none"}));
    for (const auto& name : norm_names()) EXPECT_EQ(norm_name(parse_norm(name)), name);
    EXPECT_EQ(parse_norm("batch"), Norm::batch);
    EXPECT_EQ(parse_norm("batch-renorm"), Norm::batch_renorm);
    EXPECT_EQ(norm_from_bn(true), Norm::batch);
    EXPECT_EQ(norm_from_bn(false), Norm::none);
    try {
        parse_norm("batchnorm");
        ADD_FAILURE() << "an unknown normalization was parsed";
    } catch (const std::invalid_argument& e) {
        EXPECT_STREQ(e.what(),
                     "unknown normalization 'batchnorm' (known: batch, batch-renorm, ghost, group, layer, instance, frn, none)");
    }
}

// Every norm in a ModelConfig whose settings differ from the defaults.
ModelConfig with_settings(Norm norm) {
    ModelConfig c;
    c.norm = norm;
    c.norm_groups = 8;
    c.ghost_batch = 4;
    c.renorm = {.rmax = 2.5, .dmax = 1.5, .warmup = 7, .rmax_at = 70, .dmax_at = 30, .momentum = 0.05};
    c.init_sigma = 0.1;
    return c;
}

std::set<std::string> keys_of(const nlohmann::json& json) {
    std::set<std::string> keys;
    for (const auto& [key, value] : json.items()) keys.insert(key);
    return keys;
}

// config.json gets a norm's settings only with that norm, so that the runs recorded before them
// still match; and reads back to the same model.
TEST(ModelConfig, ConfigJsonRecordsANormsSettingsOnlyWithItAndReadsBack) {
    const std::set<std::string> common{"model", "norm", "init_sigma", "dropout"};
    const std::set<std::string> renorm{"renorm_rmax", "renorm_dmax", "renorm_warmup",
                                       "renorm_rmax_at", "renorm_dmax_at", "renorm_momentum"};
    for (const auto& name : norm_names()) {
        SCOPED_TRACE(name);
        ModelConfig c = with_settings(parse_norm(name));
        c.dropout = 0.25;
        const nlohmann::json json = to_json(c);
        std::set<std::string> expected = common;
        if (name == "group") expected.insert("norm_groups");
        if (name == "ghost") expected.insert("ghost_batch");
        if (name == "batch-renorm") expected.insert(renorm.begin(), renorm.end());
        EXPECT_EQ(keys_of(json), expected);
        EXPECT_EQ(to_json(model_config_from_json(json)), json);
    }
    const nlohmann::json renorm_json = to_json(with_settings(Norm::batch_renorm));
    EXPECT_EQ(renorm_json.at("renorm_rmax_at"), 70);
    EXPECT_EQ(renorm_json.at("renorm_momentum"), 0.05);
    const BatchRenormOptions options = with_settings(Norm::batch_renorm).renorm.options();
    EXPECT_EQ(options.momentum, 0.05);
    EXPECT_EQ(options.schedule.rmax_start, 1.0) << "the paper's start, BatchNorm";
    EXPECT_EQ(options.schedule.dmax_start, 0.0);
    EXPECT_EQ(options.schedule.relax_from, 7);
    EXPECT_EQ(options.schedule.at(70).rmax, 2.5);
    EXPECT_EQ(options.schedule.at(30).dmax, 1.5);
    EXPECT_EQ(RenormSettings{}.options().schedule.at(40000).rmax, RenormSchedule{}.at(40000).rmax) << "the paper's defaults";

    nlohmann::json no_groups = to_json(with_settings(Norm::group));
    no_groups.erase("norm_groups");
    try {
        model_config_from_json(no_groups);
        ADD_FAILURE() << "a group run without its groups was read";
    } catch (const std::invalid_argument& e) {
        EXPECT_STREQ(e.what(), "no key 'norm_groups'");
    }
    nlohmann::json wrong_type = to_json(with_settings(Norm::ghost));
    wrong_type["ghost_batch"] = "four";
    EXPECT_THROW(model_config_from_json(wrong_type), std::invalid_argument);
}

// The message check_norm_settings gives for `config`, or "" when it accepts it.
std::string settings_error(const ModelConfig& config) {
    try {
        check_norm_settings(config);
        return "";
    } catch (const std::invalid_argument& e) {
        return e.what();
    }
}

TEST(ModelConfig, ANormSettingOutOfRangeIsAnErrorNamingTheFlagAndTheRange) {
    ModelConfig c = with_settings(Norm::group);
    EXPECT_EQ(settings_error(c), "");
    c.norm_groups = 0;
    EXPECT_EQ(settings_error(c), "--norm-groups: expected a whole number >= 1; got 0");
    c.norm = Norm::layer;
    EXPECT_EQ(settings_error(c), "") << "settings of another norm are not read";

    c = with_settings(Norm::ghost);
    EXPECT_EQ(settings_error(c), "");
    c.ghost_batch = 1;
    EXPECT_EQ(settings_error(c), "--ghost-batch: expected a whole number >= 2; got 1");
    c.ghost_batch = 0;
    EXPECT_EQ(settings_error(c), "--norm ghost needs --ghost-batch B, the samples of each virtual batch (>= 2)");

    const std::pair<void (*)(RenormSettings&), const char*> renorm_cases[] = {
        {[](RenormSettings& r) { r.rmax = 0.5; }, "--renorm-rmax: expected a finite number >= 1; got 0.5"},
        {[](RenormSettings& r) { r.rmax = std::numeric_limits<double>::infinity(); },
         "--renorm-rmax: expected a finite number >= 1; got inf"},
        {[](RenormSettings& r) { r.dmax = -1; }, "--renorm-dmax: expected a finite number >= 0; got -1"},
        {[](RenormSettings& r) { r.dmax = std::nan(""); }, "--renorm-dmax: expected a finite number >= 0; got nan"},
        {[](RenormSettings& r) { r.warmup = -3; }, "--renorm-warmup: expected a whole number of steps >= 0; got -3"},
        {[](RenormSettings& r) { r.rmax_at = 6; }, "--renorm-rmax-at: expected a step >= --renorm-warmup (7); got 6"},
        {[](RenormSettings& r) { r.dmax_at = 0; }, "--renorm-dmax-at: expected a step >= --renorm-warmup (7); got 0"},
        {[](RenormSettings& r) { r.momentum = 0; }, "--renorm-momentum: expected a number in (0, 1]; got 0"},
        {[](RenormSettings& r) { r.momentum = 1.5; }, "--renorm-momentum: expected a number in (0, 1]; got 1.5"},
    };
    EXPECT_EQ(settings_error(with_settings(Norm::batch_renorm)), "");
    for (const auto& [change, message] : renorm_cases) {
        c = with_settings(Norm::batch_renorm);
        change(c.renorm);
        EXPECT_EQ(settings_error(c), message);
        Rng rng(0);
        EXPECT_THROW(make_model(c, rng), std::invalid_argument) << "make_model checks them too";
    }
}

// Each child of the model as "name Class".
std::vector<std::string> layers_of(const ModelConfig& config) {
    Rng rng(0);
    std::vector<std::string> out;
    for (const auto& [name, child] : make_model(config, rng)->named_children()) {
        const std::string description = child->describe();
        out.push_back(name + " " + description.substr(0, description.find('(')));
    }
    return out;
}

std::vector<std::string> parameter_names(const ModelConfig& config) {
    Rng rng(0);
    std::vector<std::string> out;
    for (const auto& [name, parameter] : make_model(config, rng)->named_parameters()) out.push_back(name);
    return out;
}

bool contains(const std::vector<std::string>& names, const std::string& name) {
    return std::find(names.begin(), names.end(), name) != names.end();
}

TEST(Models, SeedCnnFusesBnReluAndPoolOnlyWhereNothingComesBetweenThem) {
    ModelConfig c;
    // BN, ReLU and the pool after it one layer; after fc1, BN and ReLU.
    EXPECT_EQ(layers_of(c), (std::vector<std::string>{"conv1 Conv2d", "bn1 BatchNormReLUMaxPool2d", "conv2 Conv2d",
                                                      "bn2 BatchNormReLUMaxPool2d", "flatten Flatten", "fc1 Linear",
                                                      "bn_fc1 BatchNormReLU1d", "fc2 Linear"}));
    // SyncBatchNorm has no pooled form.
    c.sync_bn = true;
    EXPECT_EQ(layers_of(c), (std::vector<std::string>{"conv1 Conv2d", "bn1 SyncBatchNormReLU2d", "pool1 MaxPool2d",
                                                      "conv2 Conv2d", "bn2 SyncBatchNormReLU2d", "pool2 MaxPool2d",
                                                      "flatten Flatten", "fc1 Linear", "bn_fc1 SyncBatchNormReLU1d",
                                                      "fc2 Linear"}));
    c.sync_bn = false;
    c.noisy_bn = true;
    EXPECT_EQ(layers_of(c), (std::vector<std::string>{
                                "conv1 Conv2d", "bn1 BatchNorm2d", "noise1 DistributionNoise", "relu1 ReLU",
                                "pool1 MaxPool2d", "conv2 Conv2d", "bn2 BatchNorm2d", "noise2 DistributionNoise",
                                "relu2 ReLU", "pool2 MaxPool2d", "flatten Flatten", "fc1 Linear", "bn_fc1 BatchNorm1d",
                                "noise_fc1 DistributionNoise", "relu3 ReLU", "fc2 Linear"}));
    c.noisy_bn = false;
    c.norm = Norm::none;
    c.dropout = 0.5;
    EXPECT_EQ(layers_of(c), (std::vector<std::string>{"conv1 Conv2d", "relu1 ReLU", "pool1 MaxPool2d", "conv2 Conv2d",
                                                      "relu2 ReLU", "pool2 MaxPool2d", "flatten Flatten", "fc1 Linear",
                                                      "relu3 ReLU", "dropout Dropout", "fc2 Linear"}));
}

TEST(Models, PaperMlpPutsBnBeforeEachSigmoidInPlaceOfTheBias) {
    ModelConfig c;
    c.name = "paper-mlp";
    EXPECT_EQ(layers_of(c), (std::vector<std::string>{"fc1 Linear", "bn1 BatchNorm1d", "sigmoid1 Sigmoid", "fc2 Linear",
                                                      "bn2 BatchNorm1d", "sigmoid2 Sigmoid", "fc3 Linear",
                                                      "bn3 BatchNorm1d", "sigmoid3 Sigmoid", "fc4 Linear"}));
    EXPECT_FALSE(contains(parameter_names(c), "fc1.bias"));
    EXPECT_TRUE(contains(parameter_names(c), "fc4.bias"));
    c.norm = Norm::none;
    EXPECT_EQ(layers_of(c), (std::vector<std::string>{"fc1 Linear", "sigmoid1 Sigmoid", "fc2 Linear", "sigmoid2 Sigmoid",
                                                      "fc3 Linear", "sigmoid3 Sigmoid", "fc4 Linear"}));
    EXPECT_TRUE(contains(parameter_names(c), "fc1.bias"));
    c.noisy_bn = true;
    try {
        layers_of(c);
        ADD_FAILURE() << "noise after norm layers that do not exist";
    } catch (const std::invalid_argument& e) {
        EXPECT_NE(std::string(e.what()).find("needs a normalization (--norm none given)"), std::string::npos) << e.what();
    }
}

// The shape of the named parameter of the model `config` describes.
Shape parameter_shape(const ModelConfig& config, const std::string& name) {
    Rng rng(0);
    for (const auto& [n, parameter] : make_model(config, rng)->named_parameters()) {
        if (n == name) return parameter.shape();
    }
    return {};
}

// The message make_model gives for `config`, or "" when it builds it.
std::string model_error(const ModelConfig& config) {
    try {
        Rng rng(0);
        make_model(config, rng);
        return "";
    } catch (const std::invalid_argument& e) {
        return e.what();
    }
}

TEST(Models, SeedCnnTakesEveryNormWithNoneAfterFc1ForTheSpatialOnes) {
    const std::vector<std::string> none{"conv1 Conv2d", "relu1 ReLU",      "pool1 MaxPool2d", "conv2 Conv2d",
                                        "relu2 ReLU",   "pool2 MaxPool2d", "flatten Flatten", "fc1 Linear",
                                        "relu3 ReLU",   "fc2 Linear"};
    // Each norm's layers at the three positions, inserted before relu1, relu2 and relu3.
    const std::pair<Norm, std::vector<std::string>> cases[] = {
        {Norm::batch_renorm, {"bn1 BatchRenorm2d", "bn2 BatchRenorm2d", "bn_fc1 BatchRenorm1d"}},
        {Norm::ghost, {"bn1 GhostBatchNorm2d", "bn2 GhostBatchNorm2d", "bn_fc1 GhostBatchNorm1d"}},
        {Norm::group, {"bn1 GroupNorm", "bn2 GroupNorm", "bn_fc1 GroupNorm"}},
        {Norm::layer, {"bn1 LayerNorm", "bn2 LayerNorm", "bn_fc1 LayerNorm"}},
        {Norm::instance, {"bn1 InstanceNorm2d", "bn2 InstanceNorm2d"}},
    };
    for (const auto& [norm, norms] : cases) {
        SCOPED_TRACE(norm_name(norm));
        std::vector<std::string> expected = none;
        for (std::size_t i = 0; i < norms.size(); ++i) {
            const auto relu = std::find(expected.begin(), expected.end(), "relu" + std::to_string(i + 1) + " ReLU");
            expected.insert(relu, norms[i]);
        }
        EXPECT_EQ(layers_of(with_settings(norm)), expected);
    }
    EXPECT_EQ(layers_of(with_settings(Norm::frn)),
              (std::vector<std::string>{"conv1 Conv2d", "bn1 FilterResponseNorm2d", "pool1 MaxPool2d", "conv2 Conv2d",
                                        "bn2 FilterResponseNorm2d", "pool2 MaxPool2d", "flatten Flatten", "fc1 Linear",
                                        "relu3 ReLU", "fc2 Linear"}))
        << "FRN's TLU in place of the ReLU";

    ModelConfig c = with_settings(Norm::group);
    Rng rng(0);
    auto model = make_model(c, rng);
    EXPECT_NE(model->named_children()[1].second->describe().find("GroupNorm(8, 32"), std::string::npos)
        << "--norm-groups at every GroupNorm";
    EXPECT_EQ(parameter_shape(with_settings(Norm::layer), "bn1.weight"), (Shape{32, 28, 28})) << "LayerNorm over (C, H, W)";
    EXPECT_EQ(parameter_shape(with_settings(Norm::layer), "bn_fc1.bias"), (Shape{128}));
    EXPECT_EQ(parameter_shape(with_settings(Norm::instance), "bn2.weight"), (Shape{64})) << "InstanceNorm with affine";
    EXPECT_EQ(parameter_shape(with_settings(Norm::frn), "bn2.tau"), (Shape{64}));
    c.dropout = 0.5;
    c.noisy_bn = true;
    EXPECT_EQ(layers_of(c)[1], "bn1 GroupNorm");
    EXPECT_EQ(layers_of(c)[2], "noise1 DistributionNoise") << "noise after any norm layer";
}

TEST(Models, GroupNormGroupsThatDoNotDivideALayersChannelsAreAnErrorNamingBoth) {
    ModelConfig c = with_settings(Norm::group);
    c.norm_groups = 3;
    EXPECT_EQ(model_error(c), "seed-cnn's bn1 (GroupNorm): --norm-groups 3 does not divide its 32 channels "
                              "(divisors of 32: 1, 2, 4, 8, 16, 32)");
    c.norm_groups = 64;
    EXPECT_EQ(model_error(c), "seed-cnn's bn1 (GroupNorm): --norm-groups 64 does not divide its 32 channels "
                              "(divisors of 32: 1, 2, 4, 8, 16, 32)");
    c.name = "paper-mlp";
    c.norm_groups = 32;
    EXPECT_EQ(model_error(c), "paper-mlp's bn1 (GroupNorm): --norm-groups 32 does not divide its 100 channels "
                              "(divisors of 100: 1, 2, 4, 5, 10, 20, 25, 50, 100)");
    c.norm_groups = 20;
    EXPECT_EQ(model_error(c), "");
}

TEST(Models, PaperMlpKeepsTheBiasWhereTheNormLeavesTheFeaturesDifferencesAndRefusesTheSpatialNorms) {
    for (const auto& name : norm_names()) {
        SCOPED_TRACE(name);
        ModelConfig c = with_settings(parse_norm(name));
        c.name = "paper-mlp";
        c.norm_groups = 10;
        if (name == "instance" || name == "frn") {
            EXPECT_NE(model_error(c).find("paper-mlp has its norm layers after Linear layers only, which --norm " + name +
                                          " does not normalize: "),
                      std::string::npos)
                << model_error(c);
            continue;
        }
        const bool removed = name == "batch" || name == "batch-renorm" || name == "ghost";
        EXPECT_EQ(contains(parameter_names(c), "fc1.bias"), !removed);
        EXPECT_EQ(contains(parameter_names(c), "fc3.bias"), !removed);
        EXPECT_TRUE(contains(parameter_names(c), "fc4.bias"));
    }
}

TEST(Models, NoisyBnCannotComeBetweenFrnAndItsTlu) {
    ModelConfig c = with_settings(Norm::frn);
    c.noisy_bn = true;
    EXPECT_EQ(model_error(c), "noisy BN adds noise between the norm layer and its nonlinearity, and FRN's layer ends in "
                              "its nonlinearity, the TLU (--norm frn given)");
}

TEST(Verdict, GreaterIsWelchsOneSidedTestAtFivePercent) {
    const Spread low = spread_of({0.90, 0.91, 0.92}), high = spread_of({0.95, 0.96, 0.97});
    EXPECT_EQ(verdict_greater(high, low), "reproduced");
    EXPECT_EQ(verdict_greater(low, high), "not reproduced");
    const Spread noisy = spread_of({0.90, 0.99, 0.94});
    EXPECT_EQ(verdict_greater(noisy, low), "partly") << "higher, but within the spread";
    EXPECT_EQ(verdict_greater(high, low, 0.1), "partly") << "below the margin";
    EXPECT_EQ(verdict_greater(spread_of({0.99}), spread_of({0.5})), "partly") << "one seed gives no spread to beat";
    // A gap below the two sds together, but over five seeds a side: t = 3.0 with 8 df, p = 0.009.
    const Spread five_low = spread_of({0.89, 0.895, 0.90, 0.905, 0.91});
    const Spread five_high = spread_of({0.905, 0.91, 0.915, 0.92, 0.925});
    EXPECT_LT(five_high.mean - five_low.mean, five_high.sd + five_low.sd);
    EXPECT_EQ(verdict_greater(five_high, five_low), "reproduced");
}

// Steps to a target: an unreached or diverged run ranks last; Mann–Whitney decides, the median
// says "partly".
TEST(Verdict, FewerStepsIsMannWhitneysOneSidedTestWithUnreachedRunsLast) {
    const double never = std::numeric_limits<double>::infinity();
    EXPECT_EQ(median_steps({300, 100, never}), 300);
    EXPECT_EQ(median_steps({100, 200}), 150);
    EXPECT_EQ(median_steps({100, never}), never);
    EXPECT_EQ(mean_steps({100, never}), never);
    EXPECT_EQ(mean_steps({100, 200}), 150);
    EXPECT_EQ(format_steps({100, 300, never}), "median 300 (n=3, 100..never)");
    const std::vector<double> fast{100, 100, 150, 100, 120}, slow{500, 600, never, 700, 550};
    EXPECT_EQ(verdict_fewer_steps(fast, slow), "reproduced");  // complete separation: p = 1/252
    EXPECT_EQ(mann_whitney_note(fast, slow), "Mann–Whitney p = 0.004");
    EXPECT_EQ(verdict_fewer_steps(slow, fast), "not reproduced");
    EXPECT_EQ(verdict_fewer_steps({100, 200}, {150, 250}), "partly") << "2 seeds a side cannot reach p < 0.05";
    EXPECT_EQ(verdict_fewer_steps({never, never}, {100, 100}), "not reproduced");

    auto run = [](const std::string& status, std::vector<double> accuracies) {
        RunResult r{"arm/seed0", "", {status, {}, false}, {}};
        for (std::size_t k = 0; k < accuracies.size(); ++k) {
            MetricsRow row;
            row.step = 10 * (k + 1);
            row.test_acc = accuracies[k];
            r.rows.push_back(row);
        }
        return r;
    };
    const RunResult reached = run("finished", {0.5, 0.8, 0.7}), short_of = run("finished", {0.5, 0.6}),
                    diverged = run("diverged", {0.9});
    EXPECT_EQ(steps_to_target({&reached, &short_of, &diverged}, 0.8), (std::vector<double>{20, never, never}));
}

// The y-range leaves out each curve's first points and the lowest values below the percentile.
TEST(Plot, ZoomedRangeSpansTheCurvesAfterTheirFirstPoints) {
    const Curve climb{"a", {1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, {0.1, 0.80, 0.82, 0.84, 0.85, 0.86, 0.87, 0.88, 0.88, 0.88}, {}, {}};
    const AxisRange range = zoomed_y_range({climb}, 0.1, 0);
    EXPECT_NEAR(range.lo, 0.80 - 0.004, 1e-12);
    EXPECT_NEAR(range.hi, 0.88 + 0.004, 1e-12);
    EXPECT_NEAR(zoomed_y_range({climb}, 0, 0).lo, 0.1 - 0.039, 1e-12) << "nothing skipped";
    const Curve flat{"b", {1}, {0.5}, {}, {}};
    EXPECT_NEAR(zoomed_y_range({flat}).lo, 0.25, 1e-12) << "one value: a range around it";
    EXPECT_EQ(zoomed_y_range({}).hi, 1.0);
    const AxisRange widened = widened_to(range, 0.70);
    EXPECT_NEAR(widened.lo, 0.70 - 0.05 * (0.884 - 0.70), 1e-12) << "a target below the zoom shows";
    EXPECT_EQ(widened.hi, range.hi);
    EXPECT_EQ(widened_to(range, 0.85).lo, range.lo) << "one inside changes nothing";
}

// A value that is not finite (nlohmann writes null) leaves a gap in a line and in a band, rather
// than failing the plot after a driver's runs have trained.
TEST(Plot, ValuesThatAreNotFiniteLeaveGaps) {
    const double inf = std::numeric_limits<double>::infinity();
    const fs::path png = fresh_dir("plot_gaps") / "gaps.png";
    const Curve band{"a", {1, 2, 3}, {0.5, inf, 0.7}, {0.4, 0.5, std::nan("")}, {0.6, inf, 0.8}};
    ASSERT_NO_THROW(plot(PlotSpec{"gaps", "x", "y", false, {band}}, png));
    EXPECT_GT(fs::file_size(png), 0u);
    fs::remove_all(png.parent_path());
}

// Plots drawn together (one python process) each get their own PNG from their own spec; one
// that matplotlib cannot draw (x and y of different lengths) fails the call with an error naming
// the plots.
TEST(Plot, PlotsDrawnTogetherEachGetTheirOwnFile) {
    const fs::path dir = fresh_dir("plot_together");
    const Curve rising{"up", {1, 2}, {0.1, 0.9}, {}, {}}, falling{"down", {1, 2, 3}, {0.9, 0.5, 0.1}, {}, {}};
    ASSERT_NO_THROW(plot({{PlotSpec{"first", "x", "y", false, {rising}}, dir / "first.png"},
                          {PlotSpec{"second", "x", "y", true, {rising, falling}}, dir / "second it's.png"}}));
    EXPECT_EQ(read_file(dir / "first.png").substr(1, 3), "PNG");
    EXPECT_EQ(read_file(dir / "second it's.png").substr(1, 3), "PNG");
    const auto second = nlohmann::json::parse(read_file(dir / "second it's.png.json"));
    EXPECT_EQ(second.at("title"), "second");
    EXPECT_EQ(second.at("curves").size(), 2u);
    EXPECT_EQ(nlohmann::json::parse(read_file(dir / "first.png.json")).at("title"), "first");
    try {
        const Curve unequal{"unequal", {1, 2, 3}, {0.5}, {}, {}};
        plot({{PlotSpec{"fine", "x", "y", false, {rising}}, dir / "fine.png"},
              {PlotSpec{"broken", "x", "y", false, {unequal}}, dir / "broken.png"}});
        ADD_FAILURE() << "a curve of 3 x and 1 y was drawn";
    } catch (const std::exception& e) {
        EXPECT_NE(std::string(e.what()).find("fine.png, "), std::string::npos) << e.what();
        EXPECT_NE(std::string(e.what()).find("broken.png"), std::string::npos) << e.what();
    }
    fs::remove_all(dir);
}

// A model whose "sigmoid" input is x itself (Linear with weight 1, bias 0): the percentiles are
// those of the inputs, interpolated between closest ranks as numpy does.
TEST(Probes, UnitInputPercentilesAreNumpys) {
    Sequential<float> model;
    auto linear = model.add("fc", std::make_shared<Linear<float>>(1, 1));
    linear->weight().mutable_value().fill(1.0f);
    linear->bias()->mutable_value().fill(0.0f);
    model.add("sigmoid", std::make_shared<Sigmoid<float>>());
    xt::xarray<float> x = xt::xarray<float>::from_shape({11, 1});
    for (std::size_t i = 0; i < 11; ++i) x(i, 0) = static_cast<float>((7 * i) % 11);  // 0..10 shuffled
    const ProbeValues v = unit_input_percentiles(model, "sigmoid", 0, x);
    ASSERT_EQ(v.size(), 3u);
    EXPECT_EQ(v[0].first, "p15");
    EXPECT_NEAR(v[0].second, 1.5, 1e-6);  // 0.15 * 10
    EXPECT_NEAR(v[1].second, 5.0, 1e-6);
    EXPECT_NEAR(v[2].second, 8.5, 1e-6);
    EXPECT_TRUE(model.is_training()) << "the mode is restored";
    EXPECT_THROW(unit_input_percentiles(model, "tanh", 0, x), std::invalid_argument);
    EXPECT_THROW(unit_input_percentiles(model, "sigmoid", 1, x), std::invalid_argument);
    EXPECT_TRUE(model.is_training()) << "the mode is restored after an error too";
}

std::shared_ptr<Sequential<float>> noisy_bn_model(Rng& rng) {
    auto model = std::make_shared<Sequential<float>>();
    Sequential<float>& m = *model;
    m.add("fc1", std::make_shared<Linear<float>>(6, 5, false, rng));
    m.add("bn1", std::make_shared<BatchNorm1d<float>>(5));
    m.add("noise1", std::make_shared<DistributionNoise<float>>(rng.next_seed()));
    m.add("sigmoid1", std::make_shared<Sigmoid<float>>());
    m.add("fc2", std::make_shared<Linear<float>>(5, 3, true, rng));
    return model;
}

Batch small_batch() {
    Batch b{xt::xarray<float>::from_shape({8, 6}), xt::xarray<std::int64_t>::from_shape({8})};
    Rng rng(5);
    for (auto& v : b.images) v = static_cast<float>(rng.normal());
    for (std::size_t i = 0; i < 8; ++i) b.labels(i) = static_cast<std::int64_t>(i % 3);
    return b;
}

// What a probe must leave as it found it in noisy_bn_model: the weights, bn1's running mean and
// the noise layer's generator.
struct NoisyBnModelState {
    explicit NoisyBnModelState(Sequential<float>& model)
        : running_mean(*model.named_buffers()[0].second.tensor), noise(model[2].generator()->engine()) {
        for (const auto& p : model.parameters()) weights.push_back(p.value());
    }
    void expect_unchanged(Sequential<float>& model) const {
        for (std::size_t k = 0; k < weights.size(); ++k) EXPECT_EQ(model.parameters()[k].value(), weights[k]) << k;
        EXPECT_EQ(*model.named_buffers()[0].second.tensor, running_mean);
        EXPECT_TRUE(model[2].generator()->engine() == noise);
    }
    std::vector<xt::xarray<float>> weights;
    xt::xarray<float> running_mean;
    std::mt19937_64 noise;
};

// A probe's test: noisy_bn_model, small_batch and the state the probe must leave as it found.
class ProbeOnNoisyBn : public ::testing::Test {
protected:
    Rng rng{3};
    std::shared_ptr<Sequential<float>> owner = noisy_bn_model(rng);
    Sequential<float>& model = *owner;
    const Batch batch = small_batch();
    const double lr = 0.5;
    const NoisyBnModelState state{model};
};

// The landscape probe moves the weights along the gradient and runs forwards in training mode
// (updating BN's running statistics, drawing noise) but must put everything back. Its loss range
// is checked against losses computed here directly, with the same noise.
TEST_F(ProbeOnNoisyBn, LandscapeLeavesTheModelAsItFoundItAndMatchesDirectLosses) {
    const std::vector<xt::xarray<float>>& before = state.weights;

    const ProbeValues v = landscape_along_gradient(model, batch, lr, {1.0, 2.0});
    ASSERT_EQ(v.size(), 8u);
    state.expect_unchanged(model);

    // Direct: loss at w, its gradient g, then losses at w - lr * m * g, each from the same noise.
    auto loss_with_same_noise = [&] {
        const Rng saved = *model[2].generator();
        const auto saved_mean = *model.named_buffers()[0].second.tensor;
        model.zero_grad();
        const Var<float> loss = cross_entropy(model(Var<float>(batch.images)), batch.labels);
        *model[2].generator() = saved;
        *model.named_buffers()[0].second.tensor = saved_mean;
        return loss;
    };
    const Var<float> base = loss_with_same_noise();
    base.backward();
    std::vector<xt::xarray<float>> grads;
    for (const auto& p : model.parameters()) grads.push_back(p.grad());
    double grad_norm_sq = 0;
    for (const auto& g : grads) grad_norm_sq += xt::sum(xt::square(xt::cast<double>(g)))();
    double lo = base.value()(), hi = lo, largest_change = 0, beta = 0, first_order_error = 0, lowest_cosine = 1;
    for (double m : {1.0, 2.0}) {
        for (std::size_t k = 0; k < before.size(); ++k) {
            model.parameters()[k].mutable_value() = before[k] - static_cast<float>(lr * m) * grads[k];
        }
        const Var<float> moved = loss_with_same_noise();
        moved.backward();
        double change_sq = 0, dot = 0, moved_norm_sq = 0;
        for (std::size_t k = 0; k < grads.size(); ++k) {
            const auto moved_grad = xt::cast<double>(model.parameters()[k].grad());
            change_sq += xt::sum(xt::square(moved_grad - xt::cast<double>(grads[k])))();
            dot += xt::sum(moved_grad * xt::cast<double>(grads[k]))();
            moved_norm_sq += xt::sum(xt::square(moved_grad))();
        }
        const double promised = lr * m * grad_norm_sq;
        first_order_error = std::max(first_order_error, std::abs(moved.value()() - (base.value()() - promised)) / promised);
        lowest_cosine = std::min(lowest_cosine, dot / std::sqrt(grad_norm_sq * moved_norm_sq));
        lo = std::min(lo, static_cast<double>(moved.value()()));
        hi = std::max(hi, static_cast<double>(moved.value()()));
        largest_change = std::max(largest_change, std::sqrt(change_sq));
        beta = std::max(beta, std::sqrt(change_sq) / (lr * m * std::sqrt(grad_norm_sq)));
    }
    const auto column = [&](const std::string& name) {
        for (const auto& [key, value] : v) {
            if (key == name) return value;
        }
        ADD_FAILURE() << "no column " << name;
        return std::numeric_limits<double>::quiet_NaN();
    };
    EXPECT_NEAR(column("loss"), base.value()(), 1e-6);
    EXPECT_NEAR(column("loss_min"), lo, 1e-5);
    EXPECT_NEAR(column("loss_max"), hi, 1e-5);
    EXPECT_NEAR(column("loss_range"), hi - lo, 1e-5);
    EXPECT_GT(largest_change, 1e-3) << "the gradient changes along a step of a nonlinear model";
    EXPECT_NEAR(column("grad_change"), largest_change, 1e-4 * largest_change);
    EXPECT_NEAR(column("beta_smoothness"), beta, 1e-4 * beta);
    EXPECT_GT(first_order_error, 1e-3) << "the loss is not linear along the step";
    EXPECT_NEAR(column("first_order_error"), first_order_error, 1e-3 * first_order_error);
    EXPECT_LT(lowest_cosine, 1.0 - 1e-4);
    EXPECT_NEAR(column("gradient_cosine"), lowest_cosine, 1e-5);
}

// The probe's gradients for `layer`'s parameters, concatenated, with the parameters before it at
// their value minus lr times their gradient when `shifted`; every forward from the same noise
// and BN statistics.
std::vector<double> layer_gradient(Sequential<float>& model, const Batch& batch, const std::string& layer, double lr, bool shifted) {
    std::vector<xt::xarray<float>> saved;
    for (const auto& p : model.parameters()) saved.push_back(p.value());
    std::vector<std::pair<std::string, BufferRef<float>>> buffers = model.named_buffers();
    std::vector<xt::xarray<float>> saved_buffers;
    for (const auto& [name, b] : buffers) saved_buffers.push_back(b.tensor ? *b.tensor : xt::xarray<float>());
    std::vector<Rng> generators;
    for (const auto& [name, child] : model.named_children()) {
        if (Rng* g = child->generator()) generators.push_back(*g);
    }
    auto restore_noise_and_statistics = [&] {
        std::size_t k = 0;
        for (const auto& [name, child] : model.named_children()) {
            if (Rng* g = child->generator()) *g = generators[k++];
        }
        for (std::size_t b = 0; b < buffers.size(); ++b) {
            if (buffers[b].second.tensor) *buffers[b].second.tensor = saved_buffers[b];
        }
    };
    auto gradients = [&] {
        restore_noise_and_statistics();
        model.zero_grad();
        cross_entropy(model(Var<float>(batch.images)), batch.labels).backward();
        std::vector<xt::xarray<float>> out;
        for (const auto& p : model.parameters()) out.push_back(p.grad());
        return out;
    };
    const auto named = model.named_parameters();
    if (shifted) {
        const auto g = gradients();
        for (std::size_t k = 0; k < named.size() && !named[k].first.starts_with(layer + "."); ++k) {
            model.parameters()[k].mutable_value() = saved[k] - static_cast<float>(lr) * g[k];
        }
    }
    const auto g = gradients();
    std::vector<double> out;
    for (std::size_t k = 0; k < named.size(); ++k) {
        if (named[k].first.starts_with(layer + ".")) out.insert(out.end(), g[k].begin(), g[k].end());
    }
    for (std::size_t k = 0; k < saved.size(); ++k) model.parameters()[k].mutable_value() = saved[k];
    restore_noise_and_statistics();
    return out;
}

// Santurkar's ICS of fc2 in a noisy-BN model: the probe's ||G - G'|| and cos(G, G') are those of
// the gradients computed here, the shift of fc1 (no parameter before it) is 0 with cosine 1, and
// the model (weights, BN statistics, noise generator) is left as the probe found it.
TEST_F(ProbeOnNoisyBn, InternalCovariateShiftMatchesDirectGradientsAndLeavesTheModelAlone) {

    const ProbeValues v = internal_covariate_shift(model, batch, lr, {"fc1", "fc2"});
    state.expect_unchanged(model);

    ASSERT_EQ(v.size(), 4u);
    EXPECT_EQ(v[0], (std::pair<std::string, double>("ics_fc1", 0.0)));
    EXPECT_EQ(v[1], (std::pair<std::string, double>("ics_cos_fc1", 1.0)));
    const std::vector<double> g = layer_gradient(model, batch, "fc2", lr, false), shifted = layer_gradient(model, batch, "fc2", lr, true);
    double change_sq = 0, dot = 0, g_sq = 0, shifted_sq = 0;
    for (std::size_t i = 0; i < g.size(); ++i) {
        change_sq += (g[i] - shifted[i]) * (g[i] - shifted[i]);
        dot += g[i] * shifted[i];
        g_sq += g[i] * g[i];
        shifted_sq += shifted[i] * shifted[i];
    }
    EXPECT_GT(std::sqrt(change_sq), 1e-3) << "updating fc1 and bn1 moves fc2's gradient";
    EXPECT_EQ(v[2].first, "ics_fc2");
    EXPECT_NEAR(v[2].second, std::sqrt(change_sq), 1e-4 * std::sqrt(change_sq));
    EXPECT_EQ(v[3].first, "ics_cos_fc2");
    EXPECT_NEAR(v[3].second, dot / std::sqrt(g_sq * shifted_sq), 1e-6);
    const std::string message = xgrad_test::error_of<std::invalid_argument>([&] { internal_covariate_shift(model, batch, lr, {"sigmoid1"}); });
    EXPECT_NE(message.find("no layer with parameters at 'sigmoid1' (the model's parameters: fc1.weight, bn1.weight"), std::string::npos)
        << message;
}

// When the earlier layer's gradient is 0 its update changes nothing: fc1's ReLU outputs are all
// 0 (weights 0, bias -1), so fc1 gets no gradient, and fc2's gradient stays exactly where it was.
TEST(Probes, InternalCovariateShiftIsZeroWhenTheEarlierLayersCannotMove) {
    Rng rng(4);
    Sequential<float> model;
    auto fc1 = model.add("fc1", std::make_shared<Linear<float>>(6, 5, true, rng));
    fc1->weight().mutable_value().fill(0.0f);
    fc1->bias()->mutable_value().fill(-1.0f);
    model.add("relu", std::make_shared<ReLU<float>>());
    model.add("fc2", std::make_shared<Linear<float>>(5, 3, true, rng));
    const ProbeValues v = internal_covariate_shift(model, small_batch(), 10.0, {"fc2"});
    ASSERT_EQ(v.size(), 2u);
    EXPECT_EQ(v[0].second, 0.0);
    EXPECT_EQ(v[1].second, 1.0);
}

// paper-mlp with noisy BN on 256 synthetic images, on one thread.
TrainConfig noisy_bn_synthetic_run(std::size_t steps, std::size_t eval_every) {
    TrainConfig c = paper_mlp_config("synthetic", Norm::batch);
    c.model.noisy_bn = true;
    c.synthetic_size = 256;
    c.steps = steps;
    c.eval_every = eval_every;
    c.threads = 1;
    return c;
}

// A probe that leaves the model alone changes nothing of the run: every array of the checkpoint
// of a noisy-BN run with the landscape probe (weights, BN statistics, optimizer state, noise
// generators) equals the one without, the training time aside; metrics.csv has its columns.
TEST(Probes, ARunWithTheLandscapeProbeEndsWithTheSameWeights) {
    const fs::path dir = fresh_dir("probe_run");
    const TrainConfig c = noisy_bn_synthetic_run(30, 10);
    const Probe probe = [&](Sequential<float>& model, const Batch& batch) {
        return landscape_along_gradient(model, batch, c.lr);
    };
    train(c, dir / "plain");
    train(c, dir / "probed", "train", probe);
    const Npz plain = load_npz(dir / "plain" / "checkpoint.npz"), probed = load_npz(dir / "probed" / "checkpoint.npz");
    ASSERT_EQ(plain.entries().size(), probed.entries().size());
    for (const auto& [name, array] : plain.entries()) {
        if (name == "trainer/seconds") continue;
        const NpyArray* other = probed.find(name);
        ASSERT_NE(other, nullptr) << name;
        EXPECT_TRUE(*other == array) << name;
    }
    const auto rows = read_metrics_csv(dir / "probed" / "metrics.csv");
    ASSERT_EQ(rows.size(), 3u);
    for (const auto& r : rows) EXPECT_GE(r.at("loss_range"), 0.0);
    fs::remove_all(dir);
}

// The trainer calls a probe before the step's update, on that step's batch: with an evaluation
// every step, the landscape's loss at the unmoved weights is the step's training loss itself.
TEST(Probes, AProbeSeesTheWeightsAndBatchOfTheUpdateAboutToBeMade) {
    const fs::path dir = fresh_dir("probe_before_update");
    const TrainConfig c = noisy_bn_synthetic_run(3, 1);
    const Probe probe = [&](Sequential<float>& model, const Batch& batch) {
        return landscape_along_gradient(model, batch, c.lr, {1.0});
    };
    train(c, dir, "train", probe);
    const auto rows = read_metrics_csv(dir / "metrics.csv");
    ASSERT_EQ(rows.size(), 3u);
    for (const auto& r : rows) EXPECT_NEAR(r.at("loss"), r.train_loss, 1e-6 * r.train_loss) << "step " << r.step;
    fs::remove_all(dir);
}

// paper-mlp as the drivers train it, on 128 synthetic images.
TrainConfig short_paper_mlp_run(Norm norm, std::size_t steps, std::size_t eval_every) {
    TrainConfig c = paper_mlp_config("synthetic", norm);
    c.synthetic_size = 128;
    c.steps = steps;
    c.eval_every = eval_every;
    return c;
}

// A run that diverges before its first evaluation still has a (header-only) metrics.csv; a
// driver sees it as diverged with no rows, and asking for its last row names the run.
TEST(RunAll, ARunDivergedBeforeItsFirstEvaluationHasNoRows) {
    const fs::path dir = fresh_dir("early_divergence");
    TrainConfig c = short_paper_mlp_run(Norm::none, 20, 10);
    c.divergence_loss = 1e-3;  // the first loss, about log(10), is above it
    const auto results = run_all({{"early", c, {}}}, dir, ExperimentOptions{}, std::cout);
    ASSERT_EQ(results.size(), 1u);
    EXPECT_TRUE(results[0].diverged());
    EXPECT_TRUE(results[0].rows.empty());
    EXPECT_EQ(read_file(dir / "early" / "metrics.csv"), std::string(metrics_header) + "\n");
    EXPECT_EQ(final_test_acc(results[0]), 0.0);
    EXPECT_FALSE(steps_to_reach(results[0], 0.1));
    try {
        results[0].last_row();
        ADD_FAILURE() << "a run without rows gave a last row";
    } catch (const std::runtime_error& e) {
        EXPECT_NE(std::string(e.what()).find("early: the run has no evaluation (diverged"), std::string::npos) << e.what();
    }
    fs::remove_all(dir);
}

// A driver asking for a run that finished with another configuration gets an error naming the
// run and the field, not the stale run's results.
TEST(RunAll, AFinishedRunOfAnotherConfigurationIsAnErrorNotAResult) {
    const fs::path dir = fresh_dir("stale_run");
    TrainConfig c = short_paper_mlp_run(Norm::batch, 2, 2);
    ASSERT_EQ(run_all({{"arm/seed0", c, {}}}, dir, ExperimentOptions{}, std::cout).at(0).outcome.status, "finished");
    c.lr = 0.2;
    const std::string message =
        xgrad_test::error_of<std::runtime_error>([&] { run_all({{"arm/seed0", c, {}}}, dir, ExperimentOptions{}, std::cout); });
    EXPECT_NE(message.find("arm/seed0: "), std::string::npos) << message;
    EXPECT_NE(message.find("('lr' was 0.1, now 0.2)"), std::string::npos) << message;
    fs::remove_all(dir);
}

// A run meant for every rank of mpirun is refused by a process alone, before anything trains: it
// would train on one batch's statistics under a name that says otherwise.
TEST(RunAll, ARunOverEveryRankIsRefusedAlone) {
    const fs::path dir = fresh_dir("over_every_rank");
    RunSpec whole{"arm/seed0", short_paper_mlp_run(Norm::batch, 2, 2), {}};
    RunSpec shared = whole;
    shared.name = "sync/seed0";
    shared.over_every_rank = true;
    const std::string message =
        xgrad_test::error_of<std::invalid_argument>([&] { run_all({whole, shared}, dir, ExperimentOptions{}, std::cout); });
    EXPECT_EQ(message, "sync/seed0: a run over every rank needs mpirun's ranks, and this process is alone");
    EXPECT_FALSE(fs::exists(dir / "arm")) << "refused before anything trained";
    fs::remove_all(dir);
}

// A run another build made is not mixed with this build's: run_all refuses before training
// anything, naming the run and its builds, and with rerun_stale deletes it and trains it again.
// Runs all of one earlier build are reused.
TEST(RunAll, ARunOfAnotherBuildIsRefusedOrTrainedAgain) {
    const fs::path dir = fresh_dir("other_build");
    const std::vector<RunSpec> specs{{"arm/seed0", short_paper_mlp_run(Norm::batch, 2, 2), {}},
                                     {"arm/seed1", short_paper_mlp_run(Norm::none, 2, 2), {}}};
    ASSERT_EQ(run_all(specs, dir, ExperimentOptions{}, std::cout).size(), 2u);
    const std::string other(40, 'b');
    nlohmann::json config = read_json(dir / "arm/seed0/config.json");
    config["provenance"]["commit"] = other;
    config["provenance"]["dirty"] = false;
    std::ofstream(dir / "arm/seed0/config.json") << config.dump();
    const auto written = fs::last_write_time(dir / "arm/seed0/summary.json");

    const std::string message = xgrad_test::error_of<std::runtime_error>([&] { run_all(specs, dir, ExperimentOptions{}, std::cout); });
    for (const std::string& part :
         {"1 of the runs under " + dir.string() + " were made by another build than this one (" + this_build() + ")",
          "\n  build " + other + ", then build " + this_build() + ": arm/seed0\n", std::string("--rerun-stale")}) {
        EXPECT_NE(message.find(part), std::string::npos) << part << "\n" << message;
    }
    EXPECT_EQ(fs::last_write_time(dir / "arm/seed0/summary.json"), written);

    const ExperimentOptions rerun{.rerun_stale = true};
    const auto results = run_all(specs, dir, rerun, std::cout);
    EXPECT_FALSE(results.at(0).outcome.was_already_finished);
    EXPECT_TRUE(results.at(1).outcome.was_already_finished);
    EXPECT_EQ(build_of(read_json(dir / "arm/seed0/config.json")), this_build());
    EXPECT_EQ(*rerun.run_builds, std::set<std::string>{this_build()});

    // Runs that one earlier build finished, all of them, make a table of that build: reused as
    // they are, unless rerun_stale asks for this build's.
    for (const char* run : {"arm/seed0", "arm/seed1"}) {
        for (const char* file : {"config.json", "summary.json"}) {
            nlohmann::json recorded = read_json(dir / run / file);
            recorded["provenance"]["commit"] = other;
            recorded["provenance"]["dirty"] = false;
            std::ofstream(dir / run / file) << recorded.dump();
        }
    }
    const ExperimentOptions reuse{};
    const auto reused = run_all(specs, dir, reuse, std::cout);
    EXPECT_TRUE(reused.at(0).outcome.was_already_finished && reused.at(1).outcome.was_already_finished);
    EXPECT_EQ(final_test_acc(reused.at(0)), final_test_acc(results.at(0)));
    EXPECT_EQ(reuse.run_builds->size(), 1u);
    EXPECT_NE(*reuse.run_builds->begin(), this_build());
    const auto retrained = run_all(specs, dir, rerun, std::cout);
    EXPECT_FALSE(retrained.at(0).outcome.was_already_finished || retrained.at(1).outcome.was_already_finished);
    fs::remove_all(dir);
}

// A finished run of the depth plan whose test accuracy is `acc` at steps 100, 200, ...
RunResult depth_run(std::size_t depth, Norm norm, std::size_t seed, const std::vector<double>& acc) {
    RunResult r{DepthArm{depth, norm, 1}.name() + "/seed" + std::to_string(seed), {}, {"finished", {}, false}, {}};
    for (std::size_t k = 0; k < acc.size(); ++k) {
        r.rows.emplace_back();
        r.rows.back().step = 100 * (k + 1);
        r.rows.back().test_acc = acc[k];
    }
    return r;
}

// depth's claim from runs of depths 2, 4 and 8 (target 0.3): BN trains at `bn_trains` depths,
// no norm at `plain_trains`, each with `seeds` seeds.
Claim depth_claim_of(const std::set<std::size_t>& bn_trains, const std::set<std::size_t>& plain_trains, std::size_t seeds) {
    DepthPlan plan = depth_plan(Profile::quick);
    plan.depths = {2, 4, 8};
    plan.multipliers = {1};
    plan.seeds = seeds;
    plan.target = 0.3;
    std::vector<RunResult> results;
    for (std::size_t depth : plan.depths) {
        for (std::size_t seed = 0; seed < seeds; ++seed) {
            results.push_back(depth_run(depth, Norm::batch, seed, {0.2, bn_trains.count(depth) ? 0.5 : 0.2}));
            results.push_back(depth_run(depth, Norm::none, seed, {0.1, plain_trains.count(depth) ? 0.31 : 0.29}));
        }
    }
    return depth_claim(plan, results, 1);
}

// Reproduced only when BN alone trains at every depth from some d on and the test at d says so.
TEST(DepthClaim, ReproducedWhenFromSomeDepthOnOnlyBnTrains) {
    const Claim deep = depth_claim_of({2, 4, 8}, {2}, 4);
    EXPECT_EQ(deep.verdict, "reproduced");
    EXPECT_NE(deep.measured.find("without a norm at depths: 2; with BN at: 2, 4, 8"), std::string::npos) << deep.measured;
    // 4 seeds all at step 200 against 4 that never reach it: 1 split of C(8, 4) = 70.
    EXPECT_NE(deep.measured.find("From depth 4 on"), std::string::npos) << deep.measured;
    EXPECT_NE(deep.measured.find("Mann–Whitney p = 0.014"), std::string::npos) << deep.measured;
    const Claim never = depth_claim_of({2, 4, 8}, {}, 4);
    EXPECT_EQ(never.verdict, "reproduced");
    EXPECT_NE(never.measured.find("without a norm at depths: none;"), std::string::npos) << never.measured;
    EXPECT_NE(never.measured.find("From depth 2 on"), std::string::npos) << never.measured;
    // No norm training again at the deepest depth: no onset, BN still ahead at depth 4.
    const Claim gap = depth_claim_of({2, 4, 8}, {2, 8}, 4);
    EXPECT_EQ(gap.verdict, "partly");
    EXPECT_EQ(gap.measured.find("From depth"), std::string::npos) << gap.measured;
    // Two seeds a side cannot reach p < 0.05 (1 split of 6).
    EXPECT_EQ(depth_claim_of({2, 4, 8}, {2}, 2).verdict, "partly");
    EXPECT_EQ(depth_claim_of({2}, {2}, 4).verdict, "not reproduced");
}

std::string run_cli(const std::string& args) {
    const std::string command = std::string(XGRAD_CLI) + " " + args;
    const auto [status, output] = xgrad_test::run_command(command);
    if (status != 0) throw std::runtime_error(command + " failed:\n" + output);
    return output;
}

bool is_png(const fs::path& path) { return read_file(path).substr(0, 8) == "\x89PNG\r\n\x1a\n"; }

// Runs reused from a build whose probe wrote other columns (here: one column removed, as the
// regularization runs of a build before the test set moved into the probe) end the driver with
// an error naming the driver, the column, the runs' directory and the way out, not a bare
// out_of_range.
TEST(RunAll, RunsWithoutAColumnTheDriverReadsAreNamedWithTheWayOut) {
    const fs::path results = fresh_dir("missing_column");
    const std::string command = "experiment regularization --profile quick --results " + results.string();
    run_cli(command);
    const fs::path metrics = results / "regularization" / "bn-on" / "seed0" / "metrics.csv";
    std::istringstream lines(read_file(metrics));
    std::string without, line;
    std::size_t column = 0;  // test_eval_loss's index, from the header
    while (std::getline(lines, line)) {
        std::vector<std::string> cells;
        std::istringstream fields(line);
        for (std::string cell; std::getline(fields, cell, ',');) cells.push_back(cell);
        if (without.empty()) column = static_cast<std::size_t>(std::find(cells.begin(), cells.end(), "test_eval_loss") - cells.begin());
        ASSERT_LT(column, cells.size()) << line;
        cells.erase(cells.begin() + static_cast<std::ptrdiff_t>(column));
        for (std::size_t k = 0; k < cells.size(); ++k) without += (k ? "," : "") + cells[k];
        without += "\n";
    }
    std::ofstream(metrics) << without;
    const auto again = xgrad_test::run_command(std::string(XGRAD_CLI) + " " + command);
    EXPECT_NE(again.status, 0);
    EXPECT_NE(again.output.find("regularization: metrics row of step 20 has no column 'test_eval_loss' in the runs under " +
                                (results / "regularization").string() + ", made by build " + this_build() +
                                ", whose probes wrote other columns than this build's driver reads: give --rerun-stale"),
              std::string::npos)
        << again.output;
    fs::remove_all(results);
}

// Every driver in its quick profile, then the report: each writes its claims with verdicts from
// the three allowed, plots that are PNGs, run directories with the evaluations the profile asks
// for and sane values; a second invocation reuses the finished runs.
TEST(Drivers, QuickProfilesWriteSaneResultsAndTheReport) {
    const fs::path results = fresh_dir("drivers");
    const std::string output = run_cli("experiment all --profile quick --jobs 2 --results " + results.string());
    const std::set<std::string> verdicts{"reproduced", "partly", "not reproduced"};
    std::size_t claims = 0;
    for (const Driver& d : drivers()) {
        SCOPED_TRACE(d.name);
        EXPECT_NE(output.find("== " + d.name + ":"), std::string::npos) << output;
        const nlohmann::json j = read_json(results / d.name / "claims.json");
        EXPECT_EQ(j.at("profile"), "quick");
        EXPECT_EQ(j.at("builds"), nlohmann::json::array({this_build()})) << "the build of its runs alone";
        ASSERT_FALSE(j.at("claims").empty());
        for (const auto& c : j.at("claims")) {
            EXPECT_TRUE(verdicts.count(c.at("verdict").get<std::string>())) << c.dump();
            EXPECT_FALSE(c.at("measured").get<std::string>().empty());
            EXPECT_NE(c.at("measured").get<std::string>().find("(n="), std::string::npos) << "spread over seeds";
            ++claims;
        }
        for (const auto& p : j.at("plots")) EXPECT_TRUE(is_png(results / d.name / p.get<std::string>())) << p;
    }
    // Run directories: every evaluation present, accuracies in [0, 1], probe columns ordered.
    std::size_t runs = 0;
    for (const auto& entry : fs::recursive_directory_iterator(results)) {
        if (entry.path().filename() != "summary.json") continue;
        ++runs;
        const nlohmann::json summary = read_json(entry.path());
        const auto rows = read_metrics_csv(entry.path().parent_path() / "metrics.csv");
        const std::size_t steps = summary.at("config").at("steps"), every = summary.at("config").at("eval_every");
        if (summary.at("status") == "finished") {
            EXPECT_EQ(rows.size(), steps / every) << entry.path();
        }
        for (const auto& r : rows) {
            EXPECT_GE(r.test_acc, 0.0);
            EXPECT_LE(r.test_acc, 1.0);
            if (!r.extra.empty() && r.extra[0].first == "p15") {
                EXPECT_LE(r.at("p15"), r.at("p50"));
                EXPECT_LE(r.at("p50"), r.at("p85"));
            }
        }
    }
    // convergence: 2 data sets x 4 arms (BN on/off x 2 inits) x 2 seeds; learning-rate: 2 models x 2 x 3
    // multipliers x (2 seeds MLP, 1 CNN); init: 2 x 2 sigmas x 2; regularization: 4 arms x 2; noisy-bn: 5 arms x
    // 2 search multipliers and 5 arms x 2 seeds; ics: 3 x 2; depth (whose runs saturation reads): 2 depths x
    // 4 norms x 2 multipliers x 2; batch-size: (4 norms x 2 batches, but Ghost BN at 2) x 2; train-eval:
    // 3 momenta x 2 batches x 2.
    EXPECT_EQ(runs, 16u + 12u + 6u + 8u + 8u + 20u + 6u + 32u + 14u + 12u);
    const auto depth_table = read_json(results / "depth" / "claims.json").at("tables")[0].get<std::string>();
    for (const char* row : {"| 2 | no norm | x1 |", "| 4 | GroupNorm | x5 |"}) {
        EXPECT_NE(depth_table.find(row), std::string::npos) << depth_table;
    }
    // A plot per arm with and without BN at the shallowest and the deepest depth, at each multiplier.
    EXPECT_EQ(read_json(results / "saturation" / "claims.json").at("plots").size(), 8u);
    const nlohmann::json lr = read_json(results / "learning-rate" / "claims.json");
    const auto lr_table = lr.at("tables")[0].get<std::string>(), fig3 = lr.at("tables")[1].get<std::string>();
    for (const char* m : {"| x1 |", "| x5 |", "| x30 |"}) EXPECT_NE(lr_table.find(m), std::string::npos) << lr_table;
    for (const char* arm : {"| no BN at its best, x", "| BN x1 |", "| BN x5 |", "| BN x30 |"}) {
        EXPECT_NE(fig3.find(arm), std::string::npos) << fig3;
    }
    // Speed is steps to a target, judged by Mann–Whitney; final accuracy by Welch; under both inits.
    const nlohmann::json convergence = read_json(results / "convergence" / "claims.json").at("claims");
    ASSERT_EQ(convergence.size(), 8u);
    for (std::size_t k = 0; k < 8; ++k) {
        const std::string measured = convergence[k].at("measured"), claim = convergence[k].at("claim");
        EXPECT_NE(measured.find(k % 2 ? "Welch p" : "Mann–Whitney p"), std::string::npos) << measured;
        EXPECT_EQ(claim.find("N(0, 0.1) init") != std::string::npos, k % 4 >= 2) << claim;
    }
    EXPECT_NE(convergence[0].at("measured").get<std::string>().find("steps to test accuracy 0."), std::string::npos);
    // The gap in loss and accuracy over the last evaluations, and both Dropout comparisons.
    const nlohmann::json regularization = read_json(results / "regularization" / "claims.json");
    ASSERT_EQ(regularization.at("claims").size(), 3u);
    EXPECT_NE(regularization.at("tables")[0].get<std::string>().find("| train loss | test loss | loss gap |"), std::string::npos);
    EXPECT_NE(regularization.at("claims")[1].at("measured").get<std::string>().find("BN with Dropout"), std::string::npos);
    const auto reg_rows = read_metrics_csv(results / "regularization" / "bn-on" / "seed0" / "metrics.csv");
    EXPECT_GT(reg_rows.back().at("train_eval_loss"), 0.0);
    EXPECT_GT(reg_rows.back().at("test_eval_loss"), 0.0) << "the test set measured by the probe, beside the training set";
    // Accuracy plots zoomed on where the arms differ: a y-range inside [0, 1] wider than nothing.
    const nlohmann::json zoomed = read_json(results / "convergence" / "test_accuracy_mnist.png.json");
    ASSERT_TRUE(zoomed.contains("y_range"));
    EXPECT_LT(zoomed.at("y_range")[0].get<double>(), zoomed.at("y_range")[1].get<double>());
    const std::string speed = convergence[0].at("measured"), to = "steps to test accuracy ";
    EXPECT_LT(zoomed.at("y_range")[0].get<double>(), std::stod(speed.substr(speed.find(to) + to.size())))
        << "the target's crossing in view";

    const std::string report_output = run_cli("report --results " + results.string() + " --out " + (results / "REPORT.md").string());
    EXPECT_NE(report_output.find(std::to_string(claims) + " claims"), std::string::npos) << report_output;
    const std::string report = read_file(results / "REPORT.md");
    for (std::size_t k = 1; k <= claims; ++k) EXPECT_NE(report.find("\n| " + std::to_string(k) + " | "), std::string::npos) << k;
    EXPECT_NE(report.find("](convergence/test_accuracy_mnist.png)"), std::string::npos) << "plots linked relative to the report";
    EXPECT_NE(report.find("Profile quick: a smoke test"), std::string::npos);
    EXPECT_NE(report.find("uncommitted changes): `" + this_build() + "` (convergence, distributions, "), std::string::npos)
        << report;
    EXPECT_NE(report.find("Build of its runs: `" + this_build() + "`; of its tables and verdicts: `" + this_build() + "`."),
              std::string::npos)
        << report;

    const auto metrics = results / "init" / "bn-on-sigma1" / "seed0" / "metrics.csv";
    const auto written = fs::last_write_time(metrics);
    const std::string again = run_cli("experiment init --profile quick --results " + results.string());
    EXPECT_NE(again.find("bn-on-sigma1/seed0: finished (earlier)"), std::string::npos) << again;
    EXPECT_EQ(fs::last_write_time(metrics), written) << "a finished run is never written again";
    fs::remove_all(results);
}

// One driver's claims.json with `claims` claims, as a driver writes it.
void write_claims_json(const fs::path& results, const std::string& driver, std::size_t claims,
                       const std::vector<std::string>& tables = {}) {
    nlohmann::json j = {{"profile", "quick"}, {"title", "a title"}, {"setup", "a setup"},
                        {"tables", tables}, {"plots", nlohmann::json::array()}, {"claims", nlohmann::json::array()}};
    for (std::size_t k = 0; k < claims; ++k) {
        j["claims"].push_back({{"claim", "claim " + std::to_string(k)}, {"source", "s"}, {"paper", "p"},
                               {"measured", "m"}, {"verdict", "partly"}, {"rule", "r"}});
    }
    fs::create_directories(results / driver);
    std::ofstream(results / driver / "claims.json") << j.dump();
}

// A report over no results is an error that leaves the report there alone; so is one of fewer
// claims than the report it would replace, unless --force.
TEST(Report, NoResultsOrFewerClaimsLeaveTheReportAsItWas) {
    const fs::path dir = fresh_dir("report_guard");
    const fs::path out = dir / "REPORT.md";
    const std::string report = std::string(XGRAD_CLI) + " report --out " + out.string();
    write_claims_json(dir / "two", drivers()[0].name, 2);
    ASSERT_NE(run_cli("report --results " + (dir / "two").string() + " --out " + out.string()).find("2 claims"), std::string::npos);
    const std::string before = read_file(out);
    EXPECT_NE(before.find("Build of its runs: not recorded."), std::string::npos) << "a claims.json without builds";

    fs::create_directories(dir / "empty");
    const std::pair<std::string, std::string> refused[] = {
        {report + " --results " + (dir / "missing").string(), "no results directory '" + (dir / "missing").string() + "'"},
        {"cd " + dir.string() + " && " + report, "no results directory 'results'"},
        {report + " --results " + (dir / "empty").string(),
         "no experiment results under '" + (dir / "empty").string() + "': no <experiment>/claims.json for any of " + drivers()[0].name}};
    for (const auto& [command, message] : refused) {
        SCOPED_TRACE(command);
        const auto [status, output] = xgrad_test::run_command(command);
        EXPECT_NE(status, 0) << output;
        EXPECT_NE(output.find(message), std::string::npos) << output;
        EXPECT_EQ(read_file(out), before);
    }

    write_claims_json(dir / "one", drivers()[1].name, 1);
    const std::string smaller = report + " --results " + (dir / "one").string();
    const auto [status, output] = xgrad_test::run_command(smaller);
    EXPECT_NE(status, 0) << output;
    EXPECT_NE(output.find(out.string() + " reports 2 claims and the results under '" + (dir / "one").string() +
                          "' give 1: not replaced by the smaller report (--force replaces it)"),
              std::string::npos)
        << output;
    EXPECT_EQ(read_file(out), before);
    EXPECT_NE(run_cli("report --force --results " + (dir / "one").string() + " --out " + out.string()).find("1 claims"),
              std::string::npos);
    EXPECT_NE(read_file(out).find("claim 0"), std::string::npos);
    fs::remove_all(dir);
}

// The guard counts the summary table's claims, not the rows of the sections' tables that start
// with a number (a depth, a batch size): a report regenerated from the same results replaces itself.
TEST(Report, SectionTablesWithNumberedRowsAreNotClaims) {
    const fs::path dir = fresh_dir("report_numbered_rows");
    const fs::path out = dir / "REPORT.md";
    write_claims_json(dir / "results", drivers()[0].name, 2, {"| depth | acc. |\n|---|---|\n| 3 | 0.9 |\n| 6 | 0.8 |\n| 10 | 0.1 |\n"});
    const std::string report = "report --results " + (dir / "results").string() + " --out " + out.string();
    ASSERT_NE(run_cli(report).find("2 claims"), std::string::npos);
    ASSERT_NE(read_file(out).find("| 10 | 0.1 |"), std::string::npos);
    EXPECT_NE(run_cli(report).find("2 claims"), std::string::npos);
    fs::remove_all(dir);
}

// Runs recorded "bn": true/false before --norm existed, and no build. Copied as they are, nine
// paper-profile runs of that time (tests/fixtures/runs-recorded-with-bn: BN off, on, and on with
// noise) are found finished by the `xgrad train` that made them, whether it says --bn on or
// --norm batch; a command asking for another normalization is refused rather than handed that run.
TEST(OldRuns, RunsRecordedWithBnAreFoundFinishedByTheCommandThatMadeThem) {
    const fs::path results = fresh_dir("committed");
    fs::copy(fs::path(XGRAD_SOURCE_DIR) / "tests" / "fixtures" / "runs-recorded-with-bn", results / "noisy-bn",
             fs::copy_options::recursive);
    const std::string paper_mlp = "train --model paper-mlp --dataset fashion-mnist --optimizer sgd --lr 0.1 --batch 60 "
                                  "--steps 10000 --eval-every 250 --threads 1";
    const std::pair<const char*, const char*> arms[] = {{"no-bn", "--norm none"}, {"bn", "--norm batch"}, {"noisy-bn", "--norm batch --noisy-bn"}};
    for (const auto& [arm, flags] : arms) {
        for (int seed = 0; seed < 3; ++seed) {
            const fs::path dir = results / "noisy-bn" / arm / ("seed" + std::to_string(seed));
            const std::string output = run_cli(paper_mlp + " " + flags + " --seed " + std::to_string(seed) + " --out " + dir.string());
            EXPECT_NE(output.find("holds a finished run"), std::string::npos) << dir << "\n" << output;
        }
    }

    const fs::path run = results / "noisy-bn" / "bn" / "seed0";
    ASSERT_FALSE(read_json(run / "config.json").contains("norm")) << "a run recorded before --norm";
    const std::string train = paper_mlp + " --seed 0 --out " + run.string();
    for (const char* flag : {"--bn on", "--norm batch"}) {
        EXPECT_NE(run_cli(train + " " + flag).find("holds a finished run"), std::string::npos) << flag;
    }
    const auto [status, refusal] = xgrad_test::run_command(std::string(XGRAD_CLI) + " " + train + " --norm none");
    EXPECT_NE(status, 0);
    EXPECT_NE(refusal.find("'norm' was \"batch\", now \"none\""), std::string::npos) << refusal;
    fs::remove_all(results);
}

}  // namespace
