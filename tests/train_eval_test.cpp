// What the batch-size and train-eval drivers are built from: --bn-momentum (the running
// statistics' momentum, or their cumulative average) from the flag to the layers and config.json;
// --train-subset; the equivalence verdict; and the BN statistics probe, which must leave the model as it found it and
// whose figures must be those of PreciseBN and of training-mode forwards done by hand.
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <xtensor/xview.hpp>

#include "experiments/batch_loader.hpp"
#include "experiments/bn_statistics_probe.hpp"
#include "experiments/equivalence.hpp"
#include "experiments/evaluation.hpp"
#include "experiments/models.hpp"
#include "experiments/run_data.hpp"
#include "experiments/train_config.hpp"
#include "experiments/train_flags.hpp"
#include "layers/normalization/batch_norm.hpp"
#include "layers/normalization/precise_bn.hpp"
#include "layers/submodules.hpp"

namespace {

using namespace xgrad;

// The momentum of every BatchNorm layer of the model `config` builds.
std::vector<std::optional<double>> momenta_of(const TrainConfig& config) {
    Rng rng(0);
    auto model = make_model(config.model, rng);
    std::vector<std::optional<double>> out;
    for (Module<float>* m : submodules(*model)) {
        if (auto* bn = dynamic_cast<BatchNorm<float>*>(m)) out.push_back(bn->options().momentum);
    }
    return out;
}

TEST(BnMomentum, TheFlagReachesEveryBatchNormLayerAndConfigJsonOnlyWhenNotTorchsDefault) {
    const TrainConfig torch_default = parse_train_flags({"--norm", "batch"});
    EXPECT_EQ(momenta_of(torch_default), std::vector<std::optional<double>>(3, 0.1));
    EXPECT_FALSE(to_json(torch_default).contains("bn_momentum")) << "runs begun before the flag still match";
    EXPECT_FALSE(to_json(parse_train_flags({"--bn-momentum", "0.1"})).contains("bn_momentum"));

    const TrainConfig slow = parse_train_flags({"--bn-momentum", "0.01"});
    EXPECT_EQ(momenta_of(slow), std::vector<std::optional<double>>(3, 0.01));
    EXPECT_EQ(to_json(slow).at("bn_momentum"), 0.01);
    EXPECT_EQ(first_difference(to_json(slow), to_json(torch_default)), "bn_momentum");

    const TrainConfig cumulative = parse_train_flags({"--bn-momentum", "cumulative", "--sync-bn"});
    EXPECT_EQ(momenta_of(cumulative), std::vector<std::optional<double>>(3, std::nullopt));
    EXPECT_EQ(to_json(cumulative).at("bn_momentum"), "cumulative");

    for (const TrainConfig& c : {slow, cumulative}) {
        EXPECT_EQ(model_config_from_json(to_json(c)).bn_momentum, c.model.bn_momentum) << to_json(c).dump();
    }
}

TEST(BnMomentum, OutOfRangeOrWithAnotherNormIsAnErrorNamingTheFlag) {
    for (const char* bad : {"0", "1.5", "-0.1", "nan", "cumulate"}) {
        try {
            parse_train_flags({"--bn-momentum", bad});
            ADD_FAILURE() << bad << " was taken";
        } catch (const CLI::ParseError& e) {
            EXPECT_NE(std::string(e.what()).find("expected a number in (0, 1] or cumulative; got " + std::string(bad)),
                      std::string::npos)
                << e.what();
        }
    }
    try {
        parse_train_flags({"--norm", "group", "--bn-momentum", "0.01"});
        ADD_FAILURE() << "--bn-momentum with GroupNorm was taken";
    } catch (const CLI::ParseError& e) {
        EXPECT_NE(std::string(e.what()).find("--bn-momentum applies to --norm batch only, not to --norm group"), std::string::npos)
            << e.what();
    }
    ModelConfig model;
    model.bn_momentum = 0.0;
    EXPECT_THROW(check_model_config(model), std::invalid_argument);
}

TEST(TrainSubset, IsTheFirstImagesOfTheTrainingSetAndTooManyIsAnError) {
    TrainConfig c;
    c.dataset = "synthetic";
    c.synthetic_size = 40;
    const Dataset whole = training_set_of(c);
    c.train_subset = 12;
    EXPECT_EQ(to_json(c).at("train_subset"), 12);
    const Dataset head = training_set_of(c);
    ASSERT_EQ(head.labels.size(), 12u);
    EXPECT_EQ(head.images, xt::xarray<float>(xt::view(whole.images, xt::range(0, 12))));
    EXPECT_EQ(head.labels, xt::xarray<std::int64_t>(xt::view(whole.labels, xt::range(0, 12))));
    EXPECT_EQ(test_set_of(c).labels.size(), 10u) << "the test set stays whole";
    c.train_subset = 41;
    try {
        training_set_of(c);
        ADD_FAILURE() << "a subset larger than the set was taken";
    } catch (const std::invalid_argument& e) {
        EXPECT_EQ(std::string(e.what()), "--train-subset 41: the training set of synthetic has 40 images");
    }
    c.train_subset = 0;
    EXPECT_FALSE(to_json(c).contains("train_subset")) << "runs begun before the flag still match";
    EXPECT_EQ(parse_train_flags({"--train-subset", "500"}).train_subset, 500u);
}

// "a is not above b by more than the margin": reproduced only when Welch's test puts a below the
// bound, partly when a's mean is below it without evidence, not reproduced at or above it.
TEST(Equivalence, IsWelchsOneSidedTestAgainstTheBoundOfBPlusTheMargin) {
    const Spread b{.mean = 10, .sd = 0.2, .min = 9.8, .max = 10.2, .n = 3};
    const auto a_at = [](double mean, double sd) { return Spread{.mean = mean, .sd = sd, .min = mean - sd, .max = mean + sd, .n = 3}; };
    EXPECT_EQ(verdict_within(a_at(10.2, 0.2), b, 1.0), "reproduced");
    EXPECT_EQ(verdict_within(a_at(9.0, 0.2), b, 1.0), "reproduced") << "below b itself is within the bound";
    EXPECT_EQ(verdict_within(a_at(10.9, 2.0), b, 1.0), "partly");
    EXPECT_EQ(verdict_within(a_at(11.2, 0.2), b, 1.0), "not reproduced");
    EXPECT_EQ(within_note(a_at(10.2, 0.2), b, 1.0, "1 point"),
              "Welch " + format_p(welch_greater(Spread{.mean = 11, .sd = 0.2, .min = 10.8, .max = 11.2, .n = 3}, a_at(10.2, 0.2)).p) +
                  " for a difference below 1 point");
    EXPECT_EQ(within_rule("GN's error at 2", "its error at 32", "1 point"),
              "reproduced when GN's error at 2 is below its error at 32 plus 1 point (an equivalence bound) by Welch's "
              "one-sided t-test at p < 0.05; partly when its mean is below that bound at all");
}

// "a and b are the same within the margin": both one-sided tests, so that a far below b fails as
// a far above it does (verdict_within alone would call it reproduced).
TEST(Equivalence, TwoSidedNeedsBothOneSidedTests) {
    const Spread b{.mean = 10, .sd = 0.2, .min = 9.8, .max = 10.2, .n = 3};
    const auto a_at = [](double mean, double sd) { return Spread{.mean = mean, .sd = sd, .min = mean - sd, .max = mean + sd, .n = 3}; };
    EXPECT_EQ(verdict_equivalent(a_at(10.2, 0.2), b, 1.0), "reproduced");
    EXPECT_EQ(verdict_within(a_at(9.0, 0.2), b, 1.0), "reproduced");
    EXPECT_EQ(verdict_equivalent(a_at(9.0, 0.2), b, 1.0), "not reproduced") << "a point below is at the lower bound";
    EXPECT_EQ(verdict_equivalent(a_at(5.0, 0.2), b, 1.0), "not reproduced");
    EXPECT_EQ(verdict_equivalent(a_at(11.2, 0.2), b, 1.0), "not reproduced");
    EXPECT_EQ(verdict_equivalent(a_at(9.2, 2.0), b, 1.0), "partly") << "inside the bounds without evidence";
    EXPECT_NE(equivalence_note(a_at(10.2, 0.2), b, 1.0, "1 point").find("(one way), p"), std::string::npos);
}

struct ProbeFixture {
    TrainConfig config;
    Dataset train, test;
    std::shared_ptr<Sequential<float>> model;

    ProbeFixture() {
        config.dataset = "synthetic";
        config.synthetic_size = 64;
        train = training_set_of(config);
        test = test_set_of(config);
        Rng rng(3);
        model = make_model(config.model, rng);
        // A few training-mode forwards, so that the running statistics are neither the initial
        // ones nor the population's.
        BatchLoader loader(train, {.batch_size = 8, .seed = 5});
        model->train();
        for (int k = 0; k < 3; ++k) (void)(*model)(Var<float>(loader.next().images));
    }
};

// Parameters and buffers by name, counters as floats.
std::map<std::string, xt::xarray<float>> state_of(const Module<float>& model) {
    std::map<std::string, xt::xarray<float>> out;
    for (const auto& [name, p] : model.named_parameters()) out[name] = p.value();
    for (const auto& [name, b] : model.named_buffers()) {
        out[name] = b.tensor ? *b.tensor : xt::xarray<float>(static_cast<float>(*b.counter));
    }
    return out;
}

TEST(BnStatisticsProbe, LeavesTheModelAsItFoundItAndMeasuresWhatPreciseBnAndTrainModeGive) {
    ProbeFixture f;
    const BnStatisticsProbeOptions options{.batch = 4, .recalibration_batches = 5, .seed = 7, .test_samples = 12};
    const auto before = state_of(*f.model);
    const double running_acc = evaluate(*f.model, f.test, false, 12).accuracy;
    const ProbeValues values = bn_statistics_gaps(*f.model, f.train, f.test, options);
    EXPECT_EQ(state_of(*f.model), before);
    EXPECT_TRUE(f.model->is_training());
    ASSERT_EQ(values.size(), 4u);
    EXPECT_EQ(values[0].first, "running_acc");
    EXPECT_EQ(values[0].second, running_acc) << "eval mode with the running statistics of the weights probed";
    EXPECT_EQ(values[1].first, "precise_acc");
    EXPECT_EQ(values[2].first, "train_mode_acc");
    EXPECT_EQ(values[3].first, "stats_lag");

    // Train mode by hand: three batches of 4 of the first 12 test images, each by its own statistics.
    std::size_t right = 0;
    for (std::size_t b = 0; b < 3; ++b) {
        const xt::xarray<float> images = xt::view(f.test.images, xt::range(4 * b, 4 * b + 4));
        const xt::xarray<std::int64_t> labels = xt::view(f.test.labels, xt::range(4 * b, 4 * b + 4));
        right += count_correct((*f.model)(Var<float>(images)).value(), labels);
    }
    EXPECT_EQ(values[2].second, static_cast<double>(right) / 12.0);

    // PreciseBN by hand, over the batches the probe takes; afterwards the running statistics are the
    // population's, so a second probe finds them exact.
    BatchLoader loader(f.train, {.batch_size = 4, .seed = 7, .drop_last = true});
    recalibrate_batch_norm<float>(*f.model, 5, [&loader](std::size_t) { return loader.next().images; });
    EXPECT_EQ(values[1].second, evaluate(*f.model, f.test, false, 12).accuracy);
    EXPECT_GT(values[3].second, 0.0) << "statistics of three batches are not the population's";
    EXPECT_EQ(bn_statistics_gaps(*f.model, f.train, f.test, options)[3].second, 0.0);
}

TEST(BnStatisticsProbe, AModelWithoutRunningStatisticsIsAnError) {
    ProbeFixture f;
    f.config.model.norm = Norm::group;
    Rng rng(0);
    auto group = make_model(f.config.model, rng);
    EXPECT_THROW(bn_statistics_gaps(*group, f.train, f.test, {.batch = 4}), std::invalid_argument);
}

}  // namespace
