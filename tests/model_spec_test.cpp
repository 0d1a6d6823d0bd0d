// Models as spec files (experiments/model_spec.hpp): the shipped seed-cnn and paper-mlp specs
// against the built-in models, bit for bit, over every norm and the flags around it; every error
// of a spec at load with its message; residual blocks in a spec; config.json's record of a spec;
// and the shipped specs through the command line (train, resume, eval without the spec file).
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <cctype>
#include <memory>
#include <optional>
#include <ostream>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>
#include <xtensor/xmath.hpp>
#include <xtensor/xrandom.hpp>

#include "experiments/model_spec.hpp"
#include "experiments/models.hpp"
#include "experiments/sigmoid_mlp.hpp"
#include "experiments/train_config.hpp"
#include "layers/adam.hpp"
#include "layers/conv2d.hpp"
#include "layers/cross_entropy.hpp"
#include "layers/residual.hpp"
#include "tests/run_command.hpp"
#include "tests/temp_dir.hpp"

namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using xgrad::ModelConfig;
using xgrad::Norm;
using xgrad_test::run_command;

const fs::path specs_dir = fs::path(XGRAD_SOURCE_DIR) / "experiments" / "specs" / "models";

// ---------------------------------------------------------------------------------------------
// The shipped specs of the built-in models against the built-ins

struct EquivalenceCase {
    std::string model;
    Norm norm;
    std::string variant;  // "plain", "dropout-init-sigma", "noisy-bn", "sync-bn"
};

std::ostream& operator<<(std::ostream& os, const EquivalenceCase& c) {
    return os << c.model << " --norm " << xgrad::norm_name(c.norm) << " " << c.variant;
}

// Every norm with each variant it takes: noisy BN needs a norm layer with a nonlinearity after
// it (not none, not frn), --sync-bn a batch norm.
std::vector<EquivalenceCase> equivalence_cases() {
    std::vector<EquivalenceCase> cases;
    for (const std::string model : {"seed-cnn", "paper-mlp"}) {
        for (const auto& name : xgrad::norm_names()) {
            const Norm norm = xgrad::parse_norm(name);
            cases.push_back({model, norm, "plain"});
            cases.push_back({model, norm, "dropout-init-sigma"});
            if (norm != Norm::none && norm != Norm::frn) cases.push_back({model, norm, "noisy-bn"});
            if (norm == Norm::batch) cases.push_back({model, norm, "sync-bn"});
        }
    }
    return cases;
}

ModelConfig builtin_config(const EquivalenceCase& c) {
    ModelConfig config;
    config.name = c.model;
    config.norm = c.norm;
    config.norm_groups = c.model == "paper-mlp" ? 10 : 8;
    config.ghost_batch = 4;
    config.renorm.warmup = 0;  // renormalizing from the first step
    config.renorm.rmax_at = 2;
    config.renorm.dmax_at = 2;
    if (c.variant == "dropout-init-sigma") {
        config.dropout = 0.3;
        config.init_sigma = 0.05;
    }
    config.noisy_bn = c.variant == "noisy-bn";
    config.sync_bn = c.variant == "sync-bn";
    return config;
}

ModelConfig spec_config(const EquivalenceCase& c) {
    ModelConfig config = builtin_config(c);
    xgrad::use_model_spec(config, specs_dir / (c.model + ".json"));
    return config;
}

// The error message of f, or nullopt when it throws none.
template <class F>
std::optional<std::string> error_of(F f) {
    try {
        f();
    } catch (const std::invalid_argument& e) {
        return std::string(e.what());
    }
    return std::nullopt;
}

void expect_same_state(xgrad::Sequential<float>& builtin, xgrad::Sequential<float>& spec) {
    std::vector<std::string> builtin_layers, spec_layers;
    for (const auto& [name, child] : builtin.named_children()) builtin_layers.push_back(name + ": " + child->describe());
    for (const auto& [name, child] : spec.named_children()) spec_layers.push_back(name + ": " + child->describe());
    EXPECT_EQ(builtin_layers, spec_layers);
    const auto builtin_parameters = builtin.named_parameters(), spec_parameters = spec.named_parameters();
    ASSERT_EQ(builtin_parameters.size(), spec_parameters.size());
    for (std::size_t i = 0; i < builtin_parameters.size(); ++i) {
        EXPECT_EQ(builtin_parameters[i].first, spec_parameters[i].first);
        EXPECT_EQ(builtin_parameters[i].second.value(), spec_parameters[i].second.value()) << builtin_parameters[i].first;
    }
    const auto builtin_buffers = builtin.named_buffers(), spec_buffers = spec.named_buffers();
    ASSERT_EQ(builtin_buffers.size(), spec_buffers.size());
    for (std::size_t i = 0; i < builtin_buffers.size(); ++i) {
        EXPECT_EQ(builtin_buffers[i].first, spec_buffers[i].first);
        const auto& a = builtin_buffers[i].second;
        const auto& b = spec_buffers[i].second;
        ASSERT_EQ(a.tensor != nullptr, b.tensor != nullptr) << builtin_buffers[i].first;
        if (a.tensor) {
            EXPECT_EQ(*a.tensor, *b.tensor) << builtin_buffers[i].first;
        } else {
            EXPECT_EQ(*a.counter, *b.counter) << builtin_buffers[i].first;
        }
    }
}

// Three Adam steps on fixed random batches of 8: the losses, each bit of them.
std::vector<float> training_losses(xgrad::Sequential<float>& model, bool flat) {
    xt::random::seed(7);
    xgrad::Adam<float> adam(model.parameters(), {.lr = 1e-2});
    model.train();
    std::vector<float> losses;
    for (int step = 0; step < 3; ++step) {
        const xt::xarray<float> images =
            xt::random::randn<float>(flat ? std::vector<std::size_t>{8, 784} : std::vector<std::size_t>{8, 1, 28, 28});
        const xt::xarray<std::int64_t> labels = xt::random::randint<std::int64_t>({8}, 0, 10);
        adam.zero_grad();
        const xgrad::Var<float> loss = xgrad::cross_entropy(model(xgrad::Var<float>(images)), labels);
        loss.backward();
        adam.step();
        losses.push_back(loss.value()());
    }
    return losses;
}

class SpecOfBuiltin : public ::testing::TestWithParam<EquivalenceCase> {};

TEST_P(SpecOfBuiltin, GivesTheSameLayersWeightsBuffersAndLosses) {
    const ModelConfig builtin_model = builtin_config(GetParam()), spec_model = spec_config(GetParam());
    xgrad::Rng builtin_rng(3), spec_rng(3);
    std::shared_ptr<xgrad::Sequential<float>> builtin, spec;
    const auto builtin_error = error_of([&] { builtin = xgrad::make_model(builtin_model, builtin_rng); });
    const auto spec_error = error_of([&] { spec = xgrad::make_model(spec_model, spec_rng); });
    if (builtin_error) {  // paper-mlp with the spatial norms: the spec refuses them too
        ASSERT_TRUE(spec_error) << "the built-in refuses: " << *builtin_error;
        EXPECT_NE(spec_error->find("has no layer on (N, features)"), std::string::npos) << *spec_error;
        return;
    }
    ASSERT_FALSE(spec_error) << *spec_error;
    expect_same_state(*builtin, *spec);
    EXPECT_EQ(builtin_rng.next_seed(), spec_rng.next_seed()) << "the same number of draws";
    ASSERT_EQ(xgrad::model_takes_flat_input(builtin_model), xgrad::model_takes_flat_input(spec_model));
    const bool flat = xgrad::model_takes_flat_input(spec_model);
    EXPECT_EQ(training_losses(*builtin, flat), training_losses(*spec, flat));
    expect_same_state(*builtin, *spec);
}

INSTANTIATE_TEST_SUITE_P(EveryNorm, SpecOfBuiltin, ::testing::ValuesIn(equivalence_cases()),
                         [](const ::testing::TestParamInfo<EquivalenceCase>& info) {
                             std::string name = info.param.model + "_" + xgrad::norm_name(info.param.norm) + "_" + info.param.variant;
                             for (char& ch : name) ch = std::isalnum(static_cast<unsigned char>(ch)) ? ch : '_';
                             return name;
                         });

// The generated sigmoid MLPs of the depth driver: depth 3 is paper-mlp, bit for bit, with every
// norm it takes; depth 9 is the shipped ten-Linear spec.
TEST(SigmoidMlp, DepthThreeIsPaperMlpAndDepthNineIsTheShippedSpec) {
    for (const Norm norm : {Norm::none, Norm::batch, Norm::group, Norm::layer}) {
        SCOPED_TRACE(xgrad::norm_name(norm));
        ModelConfig builtin_model = builtin_config({"paper-mlp", norm, "plain"});
        ModelConfig generated_model = xgrad::sigmoid_mlp_model(3, 100, norm);
        generated_model.norm_groups = builtin_model.norm_groups;
        xgrad::Rng builtin_rng(5), generated_rng(5);
        const auto builtin = xgrad::make_model(builtin_model, builtin_rng);
        const auto generated = xgrad::make_model(generated_model, generated_rng);
        expect_same_state(*builtin, *generated);
        EXPECT_EQ(training_losses(*builtin, true), training_losses(*generated, true));
    }
    const json shipped = xgrad::load_model_spec(specs_dir / "sigmoid-mlp-10.json"), generated = xgrad::sigmoid_mlp_spec(9, 100);
    EXPECT_EQ(generated.at("input"), shipped.at("input"));
    EXPECT_EQ(generated.at("layers"), shipped.at("layers"));
    EXPECT_NO_THROW(xgrad::check_model_spec(xgrad::sigmoid_mlp_spec(20, 7), "depth 20"));
    EXPECT_EQ(xgrad::sigmoid_layer_names(2), (std::vector<std::string>{"sigmoid1", "sigmoid2"}));
    const auto message = error_of([] { xgrad::sigmoid_mlp_spec(0, 100); });
    ASSERT_TRUE(message);
    EXPECT_NE(message->find("depth 0"), std::string::npos) << *message;
}

// ---------------------------------------------------------------------------------------------
// Errors at load

// A spec of images whose layers are `layers`.
json image_spec(const json& layers) { return {{"input", {1, 28, 28}}, {"layers", layers}}; }
json flat_spec(const json& layers) { return {{"input", {784}}, {"layers", layers}}; }

const json conv32 = {{"type", "conv"}, {"out_channels", 32}, {"kernel", 3}, {"padding", 1}};
const json to_classes = {{"type", "linear"}, {"out_features", 10}};
const json flatten = {{"type", "flatten"}};

void expect_spec_error(const json& spec, const std::vector<std::string>& parts) {
    const auto message = error_of([&] { xgrad::check_model_spec(spec, "m.json"); });
    ASSERT_TRUE(message) << "no error for " << spec.dump();
    EXPECT_EQ(message->rfind("m.json: ", 0), 0u) << *message;
    for (const auto& part : parts) EXPECT_NE(message->find(part), std::string::npos) << *message << "\nlacks: " << part;
}

TEST(SpecErrors, UnknownTypesAndKeysAreNamedWithTheLayer) {
    expect_spec_error(flat_spec({to_classes, {{"type", "lineer"}}}), {"layers[1]: unknown type 'lineer'", "known: conv, linear"});
    expect_spec_error(flat_spec({{{"type", "linear"}, {"out_feature", 10}}}),
                      {"layers[0] (linear, input (N, 784))", "unknown key 'out_feature'", "out_features"});
    json extra_key = flat_spec(json::array({to_classes}));
    extra_key["output"] = 10;
    expect_spec_error(extra_key, {"unknown key 'output'"});
    expect_spec_error(flat_spec({{{"name", "fc"}}}), {"layers[0]", "expected a \"type\""});
    expect_spec_error(flat_spec({3}), {"layers[0]", "expected a layer"});
    expect_spec_error(flat_spec(json::array()), {"layers", "expected a non-empty list"});
    expect_spec_error({{"layers", {to_classes}}}, {"no key 'input'"});
    expect_spec_error({{"input", {3, 32, 32}}, {"layers", {to_classes}}}, {"'input' is [3,32,32]", "[784]"});
}

TEST(SpecErrors, WrongJsonTypesAndValuesOutOfRangeNameTheKeyAndTheRange) {
    json conv = conv32;
    conv["out_channels"] = "32";
    expect_spec_error(image_spec({conv, flatten, to_classes}), {"layers[0] (conv, input (N, 1, 28, 28))", "'out_channels' is \"32\"",
                                                                 "expected a whole number from 1 to 65536"});
    conv = conv32;
    conv["kernel"] = 0;
    expect_spec_error(image_spec({conv, flatten, to_classes}), {"'kernel' is 0, expected a whole number from 1 to 28"});
    conv = conv32;
    conv["bias"] = "yes";
    expect_spec_error(image_spec({conv, flatten, to_classes}), {"'bias' is \"yes\", expected true, false or \"auto\""});
    for (const double p : {-0.1, 1.0}) {
        expect_spec_error(flat_spec({{{"type", "dropout"}, {"p", p}}, to_classes}),
                          {"layers[0] (dropout, input (N, 784))", "'p' is", "expected a number in [0, 1)"});
    }
    expect_spec_error(image_spec({conv32, {{"type", "norm"}, {"kind", "group"}, {"groups", 5}}, flatten, to_classes}),
                      {"layers[1] (norm, input (N, 32, 28, 28))", "'groups' 5 does not divide its 32 channels"});
    expect_spec_error(image_spec({conv32, {{"type", "norm"}, {"groups", 8}}, flatten, to_classes}),
                      {"layers[1]", "'groups' applies to \"kind\": \"group\" only", "the run's --norm"});
    expect_spec_error(image_spec({conv32, {{"type", "norm"}, {"kind", "ghost"}}, flatten, to_classes}),
                      {"layers[1]", "no key 'ghost_batch'"});
    expect_spec_error(image_spec({conv32, {{"type", "norm"}, {"kind", "batchnorm"}}, flatten, to_classes}),
                      {"'kind' is \"batchnorm\", expected one of batch, batch-renorm"});
    expect_spec_error(flat_spec({to_classes, {{"type", "norm"}, {"kind", "instance"}}}),
                      {"layers[1] (norm, input (N, 10))", "kind instance has no layer on (N, features)", "\"optional\": true"});
    expect_spec_error(flat_spec({{{"type", "linear"}, {"name", "fc"}, {"out_features", 10}}, {{"type", "relu"}, {"name", "fc"}}}),
                      {"layers[1]", "the name 'fc' is also layers[0]'s"});
    expect_spec_error(flat_spec({{{"type", "linear"}, {"name", "a.b"}, {"out_features", 10}}}), {"'name' is \"a.b\""});
}

TEST(SpecErrors, ShapesALayerCannotTakeNameBothTheLayerAndTheShape) {
    expect_spec_error(image_spec({conv32, to_classes}), {"layers[1] (linear, input (N, 32, 28, 28))", "put a flatten before it"});
    expect_spec_error(image_spec({flatten, conv32}), {"layers[1] (conv, input (N, 784))", "takes (N, C, H, W)"});
    expect_spec_error(flat_spec(json::array({conv32})), {"layers[0] (conv, input (N, 784))"});
    const json pool4 = {{"type", "maxpool"}, {"kernel", 4}}, pool8 = {{"type", "maxpool"}, {"kernel", 8}};
    expect_spec_error(image_spec({pool4, pool8, flatten, to_classes}),
                      {"layers[1] (maxpool, input (N, 1, 7, 7))", "the kernel 8 is larger than the input's 7 x 7"});
    expect_spec_error(flat_spec({{{"type", "linear"}, {"out_features", 128}}}),
                      {"the model's output is (N, 128), expected (N, 10)"});
    expect_spec_error(image_spec({conv32, flatten, to_classes, {{"type", "relu"}}, {{"type", "linear"}, {"out_features", 7}}}),
                      {"(N, 7), expected (N, 10)"});
}

// Widths within their ranges can still multiply into more than memory holds: the error names the layer.
TEST(SpecErrors, ALayerTooLargeIsNamedWithItsSize) {
    const json wide = {{"type", "conv"}, {"out_channels", 65536}, {"kernel", 3}, {"padding", 28}};
    expect_spec_error(image_spec({wide, flatten, to_classes}),
                      {"layers[0] (conv, input (N, 1, 28, 28))", "its output (N, 65536, 82, 82) holds 440664064 values per sample, above the 16777216"});
    const json big = {{"type", "linear"}, {"out_features", 65536}};
    expect_spec_error(image_spec({conv32, flatten, big, to_classes}), {"layers[2] (linear, input (N, 25088))", "it has 1644167168 weights"});
    expect_spec_error(image_spec({{{"type", "flatten"}, {"name", "a/b"}}, to_classes}), {"layers[0]", "'name' is \"a/b\", expected a non-empty name"});
}

TEST(SpecErrors, AResidualBodyNamesItsNestedIndexAndAShapeChangeBothShapes) {
    const json conv64 = {{"type", "conv"}, {"out_channels", 64}, {"kernel", 3}, {"padding", 1}};
    expect_spec_error(image_spec({conv32, {{"type", "residual"}, {"layers", json::array({conv64})}}, flatten, to_classes}),
                      {"layers[1] (residual, input (N, 32, 28, 28))", "the body's output (N, 64, 28, 28)"});
    expect_spec_error(image_spec({conv32, {{"type", "residual"}, {"layers", {conv32, {{"type", "linear"}}}}}, flatten, to_classes}),
                      {"layers[1].layers[1] (linear, input (N, 32, 28, 28))", "put a flatten before it"});
    expect_spec_error(image_spec({conv32, {{"type", "residual"}}, flatten, to_classes}), {"layers[1]", "no key 'layers'"});
}

// The checks that depend on the run's norm: at build, before any run directory is written.
TEST(SpecErrors, TheRunsNormIsCheckedAtEachNormLayer) {
    ModelConfig config;
    config.norm = Norm::group;
    config.norm_groups = 5;
    xgrad::use_model_spec(config, specs_dir / "seed-cnn.json");
    xgrad::Rng rng(0);
    auto message = error_of([&] { xgrad::make_model(config, rng); });
    ASSERT_TRUE(message);
    EXPECT_NE(message->find("seed-cnn.json: layers[1] (norm, input (N, 32, 28, 28))"), std::string::npos) << *message;
    EXPECT_NE(message->find("--norm-groups 5 does not divide its 32 channels"), std::string::npos) << *message;

    config.norm = Norm::frn;
    xgrad::use_model_spec(config, specs_dir / "cnn-bn-after-relu.json");
    message = error_of([&] { xgrad::make_model(config, rng); });
    ASSERT_TRUE(message);
    EXPECT_NE(message->find("layers[2] (norm, input (N, 32, 28, 28))"), std::string::npos) << *message;
    EXPECT_NE(message->find("FRN's TLU takes the place of a ReLU, and this layer is followed by no ReLU"), std::string::npos) << *message;
}

// ---------------------------------------------------------------------------------------------
// What a spec builds

ModelConfig inline_spec(const json& spec) {
    ModelConfig config;
    config.name = xgrad::spec_model_name;
    config.spec = spec;
    config.spec_source = "inline";
    return config;
}

// Names default to the index, a norm's ReLU fuses into it, a residual's layers nest under
// "<name>.body", and --init-sigma and the random layers' seeding reach into the body.
TEST(SpecModel, ResidualBlocksNestTheirNamesAndAreReinitializedAndSeeded) {
    const json body = {{{"type", "conv"}, {"name", "conv"}, {"out_channels", 32}, {"kernel", 3}, {"padding", 1}},
                       {{"type", "norm"}, {"name", "bn"}},
                       {{"type", "relu"}},
                       {{"type", "dropout"}, {"name", "drop"}, {"p", 0.5}}};
    ModelConfig config = inline_spec(image_spec({conv32, {{"type", "relu"}}, {{"type", "residual"}, {"name", "block1"}, {"layers", body}},
                                                 {{"type", "maxpool"}, {"kernel", 4}}, flatten, to_classes}));
    config.init_sigma = 0.01;
    xgrad::Rng rng(0);
    auto model = xgrad::make_model(config, rng);
    std::vector<std::string> names;
    for (const auto& [name, p] : model->named_parameters()) names.push_back(name);
    EXPECT_EQ(names, (std::vector<std::string>{"0.weight", "0.bias", "block1.body.conv.weight", "block1.body.conv.bias",
                                               "block1.body.bn.weight", "block1.body.bn.bias", "5.weight", "5.bias"}));
    std::vector<std::string> body_layers;
    auto& block = dynamic_cast<xgrad::Residual<float>&>(*model->named_children().at(2).second);
    for (const auto& [name, child] : block.body().named_children()) body_layers.push_back(name + ": " + child->describe());
    ASSERT_EQ(body_layers.size(), 3u);  // the norm and its ReLU are one layer
    EXPECT_EQ(body_layers[0].substr(0, 12), "conv: Conv2d");
    EXPECT_EQ(body_layers[1].substr(0, 18), "bn: BatchNormReLU2") << body_layers[1];
    EXPECT_EQ(body_layers[2].substr(0, 13), "drop: Dropout");
    // torch's default init draws the conv's bias; --init-sigma zeroes it, in the body too.
    const auto& conv = dynamic_cast<xgrad::Conv2d<float>&>(block.body()[0]);
    EXPECT_EQ(*conv.bias()->value().begin(), 0.0f);
    EXPECT_LT(xt::amax(xt::abs(conv.weight().value()))(), 0.1f);
    // Two models of different seeds drop different units: the body's Dropout was seeded from the run's seed.
    xgrad::Rng other_rng(1);
    auto other = xgrad::make_model(config, other_rng);
    EXPECT_NE(block.body()[2].generator()->next_seed(),
              dynamic_cast<xgrad::Residual<float>&>(*other->named_children().at(2).second).body()[2].generator()->next_seed());
}

// A BN, a ReLU and a max pool of kernel 2 at stride 2 are one BatchNormReLUMaxPool2d named as the
// norm; any other pool after them (another kernel, another stride), or another nonlinearity
// between them, leaves the pool a layer of its own.
TEST(SpecModel, OnlyA2x2PoolAtStride2FusesIntoTheNormBeforeIt) {
    const auto layers_with = [](const json& pool, const char* activation) {
        const json spec = image_spec({conv32, {{"type", "norm"}, {"name", "bn"}}, {{"type", activation}, {"name", "act"}}, pool,
                                      flatten, to_classes});
        ModelConfig config = inline_spec(spec);
        xgrad::Rng rng(0);
        auto model = xgrad::make_model(config, rng);
        std::vector<std::string> layers;
        for (const auto& [name, child] : model->named_children()) layers.push_back(name + " " + child->describe().substr(0, child->describe().find('(')));
        return layers;
    };
    const json pool2 = {{"type", "maxpool"}, {"name", "pool"}, {"kernel", 2}};
    EXPECT_EQ(layers_with(pool2, "relu"), (std::vector<std::string>{"0 Conv2d", "bn BatchNormReLUMaxPool2d", "4 Flatten", "5 Linear"}));
    EXPECT_EQ(layers_with(json{{"type", "maxpool"}, {"name", "pool"}, {"kernel", 2}, {"stride", 2}}, "relu").at(1),
              "bn BatchNormReLUMaxPool2d");
    for (const json& other : {json{{"type", "maxpool"}, {"name", "pool"}, {"kernel", 3}},
                              json{{"type", "maxpool"}, {"name", "pool"}, {"kernel", 2}, {"stride", 1}}}) {
        EXPECT_EQ(layers_with(other, "relu"), (std::vector<std::string>{"0 Conv2d", "bn BatchNormReLU2d", "pool MaxPool2d",
                                                                          "4 Flatten", "5 Linear"}))
            << other.dump();
    }
    EXPECT_EQ(layers_with(pool2, "sigmoid"), (std::vector<std::string>{"0 Conv2d", "bn BatchNorm2d", "act Sigmoid",
                                                                         "pool MaxPool2d", "4 Flatten", "5 Linear"}));
}

TEST(SpecModel, BiasAutoFollowsTheNormAfterIt) {
    const json spec = flat_spec({{{"type", "linear"}, {"out_features", 10}, {"bias", "auto"}}, {{"type", "norm"}}});
    for (const auto& [norm, has_bias] : std::vector<std::pair<Norm, bool>>{
             {Norm::batch, false}, {Norm::ghost, false}, {Norm::batch_renorm, false}, {Norm::layer, true}, {Norm::none, true}}) {
        ModelConfig config = inline_spec(spec);
        config.norm = norm;
        config.ghost_batch = 2;
        xgrad::Rng rng(0);
        auto model = xgrad::make_model(config, rng);
        EXPECT_EQ(model->named_parameters().at(1).first == "0.bias", has_bias) << xgrad::norm_name(norm);
    }
}

// ---------------------------------------------------------------------------------------------
// config.json

TEST(SpecConfig, ConfigJsonRecordsTheSpecAndABuiltinRunRecordsNone) {
    xgrad::TrainConfig builtin, spec;
    xgrad::use_model_spec(spec.model, specs_dir / "paper-mlp.json");
    const json builtin_json = xgrad::to_json(builtin), spec_json = xgrad::to_json(spec);
    // Runs recorded before model_spec existed lack the key, as built-in runs still do.
    EXPECT_FALSE(builtin_json.contains("model_spec"));
    EXPECT_EQ(spec_json.at("model"), "spec");
    EXPECT_EQ(spec_json.at("model_spec"), xgrad::load_model_spec(specs_dir / "paper-mlp.json"));
    EXPECT_EQ(xgrad::first_difference(builtin_json, spec_json), "model");
    const ModelConfig back = xgrad::model_config_from_json(spec_json);
    EXPECT_EQ(back.spec, spec.model.spec);
    EXPECT_TRUE(xgrad::model_takes_flat_input(back));
    xgrad::TrainConfig other = spec;
    xgrad::use_model_spec(other.model, specs_dir / "sigmoid-mlp-10.json");
    EXPECT_EQ(xgrad::first_difference(spec_json, xgrad::to_json(other)), "model_spec");
    json without = spec_json;
    without.erase("model_spec");
    const auto message = error_of([&] { xgrad::model_config_from_json(without); });
    ASSERT_TRUE(message);
    EXPECT_NE(message->find("no key 'model_spec'"), std::string::npos) << *message;
}

// ---------------------------------------------------------------------------------------------
// The command line

std::string xgrad(const std::string& args) { return "timeout 120 " + std::string(XGRAD_CLI) + " " + args; }

std::string tiny_train(const std::string& model_flags, const fs::path& out) {
    return xgrad("train " + model_flags + " --dataset synthetic --synthetic-size 64 --batch 16 --steps 2 --eval-every 2 --threads 1 --out '" +
                 out.string() + "'");
}

using SpecCli = xgrad_test::TempDir;

TEST_F(SpecCli, EveryShippedSpecTrains) {
    for (const auto& entry : fs::directory_iterator(specs_dir)) {
        SCOPED_TRACE(entry.path().string());
        const fs::path run = path(entry.path().stem().string());
        const auto [status, output] = run_command(tiny_train("--model-spec '" + entry.path().string() + "'", run));
        EXPECT_EQ(status, 0) << output;
        EXPECT_NE(output.find("\"status\": \"finished\""), std::string::npos) << output;
    }
}

TEST_F(SpecCli, ARunResumesWithTheSameSpecOnlyAndEvalNeedsNoSpecFile) {
    const fs::path run = path("run"), spec = path("mine.json");
    fs::copy_file(specs_dir / "paper-mlp.json", spec);
    ASSERT_EQ(run_command(tiny_train("--model-spec '" + spec.string() + "'", run)).status, 0);
    xgrad_test::CommandResult r = run_command(tiny_train("--model-spec '" + spec.string() + "'", run));
    EXPECT_EQ(r.status, 0) << r.output;
    EXPECT_NE(r.output.find("holds a finished run"), std::string::npos) << r.output;
    r = run_command(tiny_train("--model-spec '" + (specs_dir / "sigmoid-mlp-10.json").string() + "'", run));
    EXPECT_NE(r.status, 0) << r.output;
    // The message cuts the two specs short.
    EXPECT_NE(r.output.find("another configuration ('model_spec' was {\"description\":\"The built-in paper-mlp"), std::string::npos)
        << r.output;
    EXPECT_NE(r.output.find("...); choose another output directory"), std::string::npos) << r.output;
    r = run_command(tiny_train("--model paper-mlp", run));
    EXPECT_NE(r.status, 0) << r.output;
    EXPECT_NE(r.output.find("another configuration ('model' was \"spec\", now \"paper-mlp\")"), std::string::npos) << r.output;

    // The spec file gone, eval builds the model from config.json; paper-mlp's spec takes flat images.
    fs::remove(spec);
    r = run_command(xgrad("eval --dataset synthetic --checkpoint '" + (run / "checkpoint.npz").string() + "'"));
    EXPECT_EQ(r.status, 0) << r.output;
    EXPECT_NE(r.output.find("test accuracy"), std::string::npos) << r.output;
}

TEST_F(SpecCli, BadSpecsAndModelWithModelSpecAreRefusedBeforeAnythingIsWritten) {
    const fs::path run = path("run"), spec = path("bad.json");
    std::ofstream(spec) << image_spec({conv32, to_classes}).dump();
    const std::vector<std::pair<std::string, std::string>> cases{
        {"--model-spec '" + spec.string() + "'", spec.string() + ": layers[1] (linear, input (N, 32, 28, 28))"},
        {"--model-spec '" + path("missing.json").string() + "'", "cannot read " + path("missing.json").string()},
        {"--model seed-cnn --model-spec '" + (specs_dir / "seed-cnn.json").string() + "'", "--model excludes --model-spec"},
        {"--norm group --norm-groups 5 --model-spec '" + (specs_dir / "seed-cnn.json").string() + "'",
         "layers[1] (norm, input (N, 32, 28, 28))"}};
    for (const auto& [flags, message] : cases) {
        SCOPED_TRACE(flags);
        const auto [status, output] = run_command(tiny_train(flags, run));
        EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) != 0 && WEXITSTATUS(status) < 124) << "status " << status << "\n" << output;
        EXPECT_NE(output.find(message), std::string::npos) << output;
        EXPECT_FALSE(fs::exists(run)) << "nothing written";
    }
}

// The trainer reads the layers that take batch statistics off the model, not off --norm: a spec's
// BatchNorm under --norm layer has an epoch's last batch of one sample skipped, and a spec's Ghost
// BN layer has its virtual batch checked against --batch.
TEST_F(SpecCli, BatchStatisticsLayersOfASpecAreFoundWhateverTheNorm) {
    const json batch_norm = {{"type", "norm"}, {"name", "bn"}, {"kind", "batch"}};
    const fs::path spec = path("batch.json");
    std::ofstream(spec) << flat_spec({{{"type", "linear"}, {"out_features", 32}}, batch_norm, {{"type", "relu"}}, to_classes}).dump();
    // 65 images in batches of 16: the last of an epoch has one sample.
    auto r = run_command(xgrad("train --model-spec '" + spec.string() + "' --norm layer --dataset synthetic --synthetic-size 65 "
                               "--batch 16 --epochs 1 --eval-every 4 --threads 1 --out '" + path("batch").string() + "'"));
    EXPECT_EQ(r.status, 0) << r.output;
    EXPECT_NE(r.output.find("\"steps\": 4"), std::string::npos) << r.output;

    json ghost = batch_norm;
    ghost["kind"] = "ghost";
    ghost["ghost_batch"] = 16;
    const fs::path ghost_spec = path("ghost.json");
    std::ofstream(ghost_spec) << flat_spec({{{"type", "linear"}, {"out_features", 32}}, ghost, {{"type", "relu"}}, to_classes}).dump();
    r = run_command(tiny_train("--norm none --model-spec '" + ghost_spec.string() + "'", path("ghost")));
    EXPECT_NE(r.status, 0) << r.output;
    EXPECT_NE(r.output.find("bn's virtual batch of 16 (--ghost-batch, or ghost_batch in a model spec) is not below --batch 16"),
              std::string::npos) << r.output;
    EXPECT_FALSE(fs::exists(path("ghost"))) << "nothing written";
}

}  // namespace
