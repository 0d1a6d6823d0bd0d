#include "experiments/model_spec.hpp"

#include <algorithm>
#include <cctype>
#include <cstdint>
#include <limits>
#include <optional>
#include <stdexcept>
#include <utility>
#include <vector>

#include "autodiff/shape.hpp"
#include "experiments/json_file.hpp"
#include "experiments/models.hpp"
#include "experiments/norm_activation.hpp"
#include "layers/activations.hpp"
#include "layers/conv2d.hpp"
#include "layers/linear.hpp"
#include "layers/max_pool2d.hpp"
#include "layers/residual.hpp"

namespace xgrad {

namespace {

enum class LayerType { conv, linear, norm, relu, sigmoid, tanh, maxpool, dropout, flatten, residual };

struct LayerTypeInfo {
    std::string name;
    LayerType type;
    std::vector<std::string> keys;  // besides "type" and "name"
};

const std::vector<LayerTypeInfo>& layer_types() {
    static const std::vector<LayerTypeInfo> types{
        {"conv", LayerType::conv, {"out_channels", "kernel", "stride", "padding", "bias", "weight_standardization"}},
        {"linear", LayerType::linear, {"out_features", "bias"}},
        {"norm", LayerType::norm, {"kind", "groups", "ghost_batch", "optional"}},
        {"relu", LayerType::relu, {}},
        {"sigmoid", LayerType::sigmoid, {}},
        {"tanh", LayerType::tanh, {}},
        {"maxpool", LayerType::maxpool, {"kernel", "stride"}},
        {"dropout", LayerType::dropout, {"p"}},
        {"flatten", LayerType::flatten, {}},
        {"residual", LayerType::residual, {"layers"}},
    };
    return types;
}

std::optional<Activation> activation_of(LayerType type) {
    switch (type) {
        case LayerType::relu: return Activation::relu;
        case LayerType::sigmoid: return Activation::sigmoid;
        case LayerType::tanh: return Activation::tanh;
        default: return std::nullopt;
    }
}

// The sizes a spec may ask for: wide enough for any model of 28 x 28 images, narrow enough that a
// typo is an error rather than an allocation of terabytes.
constexpr WholeRange width_range{1, 65536};
constexpr WholeRange window_range{1, 28};
constexpr WholeRange padding_range{0, 28};
// 16 Mi values per sample (a batch of 64 of them is 4 GiB) and 128 Mi weights (512 MiB) per layer:
// 2,000 and 300 times the seed CNN's largest.
constexpr std::size_t max_values_per_sample = std::size_t{1} << 24;
constexpr std::size_t max_weights = std::size_t{1} << 27;
// The data sets' samples: 1 x 28 x 28 images, flattened or not, of 10 classes.
const Shape image_shape{1, 28, 28};
const Shape flat_image_shape{784};
constexpr std::size_t classes = 10;

// One layer of a checked spec, with the shapes of one sample before and after it.
struct LayerSpec {
    LayerType type = LayerType::relu;
    std::string type_name;
    std::string name;
    std::string where;  // "layers[6].layers[2]"
    Shape input, output;
    std::size_t width = 0;  // conv's out_channels, linear's out_features
    std::size_t kernel = 0, stride = 1, padding = 0;
    std::optional<bool> bias = true;  // nullopt: "auto"
    bool weight_standardization = false;
    std::optional<Norm> kind;  // nullopt: the run's --norm
    std::optional<std::size_t> groups, ghost_batch;
    bool optional = false;
    std::optional<double> p;  // nullopt: the run's --dropout
    std::vector<LayerSpec> body;
};

// "(N, 64, 7, 7)": a sample's shape in a batch.
std::string batch_shape(const Shape& sample) {
    std::string s = "(N";
    for (std::size_t d : sample) s += ", " + std::to_string(d);
    return s + ")";
}

std::string joined(const std::vector<std::string>& words) {
    std::string out;
    for (const auto& w : words) out += (out.empty() ? "" : ", ") + w;
    return out;
}

// Reads the layers of a spec into LayerSpecs, following the shape from layer to layer; every
// error names the spec and the layer.
class SpecReader {
public:
    explicit SpecReader(std::string source) : source_(std::move(source)) {}

    std::vector<LayerSpec> read(const nlohmann::json& spec) {
        for (const auto& [key, value] : spec.items()) {
            if (key != "input" && key != "layers" && key != "description") {
                fail("", "unknown key '" + key + "' (the keys: input, layers, description)");
            }
        }
        if (spec.contains("description") && !spec.at("description").is_string()) {
            fail("", "'description' is " + spec.at("description").dump() + ", expected a string");
        }
        const Shape input = read_input(spec);
        if (!spec.contains("layers")) fail("", "no key 'layers', the list of the model's layers");
        std::vector<LayerSpec> layers = read_list(spec.at("layers"), "layers", input);
        const Shape& output = layers.back().output;
        if (output != Shape{classes}) {
            fail("", "the model's output is " + batch_shape(output) + ", expected " + batch_shape({classes}) + " for the data sets' " +
                         std::to_string(classes) + " classes");
        }
        return layers;
    }

private:
    [[noreturn]] void fail(const std::string& where, const std::string& what) const {
        throw std::invalid_argument(source_ + ": " + (where.empty() ? "" : where + ": ") + what);
    }
    [[noreturn]] void fail(const LayerSpec& layer, const std::string& what) const {
        fail(layer.where + " (" + layer.type_name + ", input " + batch_shape(layer.input) + ")", what);
    }

    Shape read_input(const nlohmann::json& spec) const {
        const std::string expected = "[1, 28, 28] (images) or [784] (flattened images), the data sets' samples";
        if (!spec.contains("input")) fail("", "no key 'input', one sample's shape: " + expected);
        const nlohmann::json& input = spec.at("input");
        const auto is_shape = [&input](const Shape& shape) { return input == nlohmann::json(shape); };
        if (!is_shape(image_shape) && !is_shape(flat_image_shape)) fail("", "'input' is " + input.dump() + ", expected " + expected);
        return input.get<Shape>();
    }

    std::vector<LayerSpec> read_list(const nlohmann::json& list, const std::string& where, const Shape& input) const {
        if (!list.is_array() || list.empty()) {
            fail(where, "expected a non-empty list of layers ([{\"type\": ...}, ...]), found " + list.dump());
        }
        std::vector<LayerSpec> layers;
        Shape shape = input;
        for (std::size_t i = 0; i < list.size(); ++i) {
            LayerSpec layer = read_layer(list[i], where + "[" + std::to_string(i) + "]", std::to_string(i), shape);
            for (const LayerSpec& before : layers) {
                if (before.name == layer.name) fail(layer, "the name '" + layer.name + "' is also " + before.where + "'s");
            }
            shape = layer.output;
            layers.push_back(std::move(layer));
        }
        return layers;
    }

    LayerSpec read_layer(const nlohmann::json& object, const std::string& where, const std::string& index, const Shape& input) const {
        if (!object.is_object()) fail(where, "expected a layer ({\"type\": ...}), found " + object.dump());
        if (!object.contains("type") || !object.at("type").is_string()) {
            fail(where, "expected a \"type\" naming the layer's kind, found " + object.dump());
        }
        const std::string type = object.at("type").get<std::string>();
        const auto& types = layer_types();
        const auto info = std::find_if(types.begin(), types.end(), [&type](const LayerTypeInfo& t) { return t.name == type; });
        if (info == types.end()) {
            std::vector<std::string> known;
            for (const auto& t : types) known.push_back(t.name);
            fail(where, "unknown type '" + type + "' (known: " + joined(known) + ")");
        }
        LayerSpec layer;
        layer.type = info->type;
        layer.type_name = type;
        layer.where = where;
        layer.input = input;
        layer.output = input;
        for (const auto& [key, value] : object.items()) {
            if (key != "type" && key != "name" && std::find(info->keys.begin(), info->keys.end(), key) == info->keys.end()) {
                std::vector<std::string> keys{"type", "name"};
                keys.insert(keys.end(), info->keys.begin(), info->keys.end());
                fail(layer, "unknown key '" + key + "' (a " + type + "'s keys: " + joined(keys) + ")");
            }
        }
        layer.name = index;
        if (object.contains("name")) {
            const nlohmann::json& name = object.at("name");
            // A dot would make the name read as a nested module's in the state_dict; a slash or a comma
            // could not name the layer's plot file or be given to --record-activations.
            const auto allowed = [](char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-'; };
            const std::string text = name.is_string() ? name.get<std::string>() : "";
            if (text.empty() || !std::all_of(text.begin(), text.end(), allowed)) {
                fail(layer, "'name' is " + name.dump() + ", expected a non-empty name of letters, digits, _ and -");
            }
            layer.name = text;
        }
        read_settings(object, layer);
        check_size(layer);
        return layer;
    }

    // Each width is bounded, but their products are not: a layer's weights and its output per sample
    // are, so that a typo is this error rather than an allocation failure naming nothing.
    void check_size(const LayerSpec& layer) const {
        std::size_t output = 1;
        for (std::size_t d : layer.output) output *= d;
        if (output > max_values_per_sample) {
            fail(layer, "its output " + batch_shape(layer.output) + " holds " + std::to_string(output) + " values per sample, above the " +
                            std::to_string(max_values_per_sample) + " a spec's layer may have");
        }
        std::size_t weights = 0;
        if (layer.type == LayerType::conv) weights = layer.width * layer.input[0] * layer.kernel * layer.kernel;
        if (layer.type == LayerType::linear) weights = layer.width * layer.input[0];
        if (weights > max_weights) {
            fail(layer, "it has " + std::to_string(weights) + " weights, above the " + std::to_string(max_weights) + " a spec's layer may have");
        }
    }

    std::size_t whole(const nlohmann::json& object, const LayerSpec& layer, const std::string& key, WholeRange range,
                      std::optional<std::size_t> fallback = std::nullopt) const {
        if (!object.contains(key)) {
            if (!fallback) fail(layer, "no key '" + key + "', " + range.words());
            return *fallback;
        }
        const nlohmann::json& value = object.at(key);
        const bool fits = value.is_number_integer() &&
                          (!value.is_number_unsigned() ||
                           value.get<std::uint64_t>() <= static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()));
        if (!fits || !range.contains(value.get<std::int64_t>())) fail(layer, "'" + key + "' is " + value.dump() + ", expected " + range.words());
        return value.get<std::size_t>();
    }

    bool boolean(const nlohmann::json& object, const LayerSpec& layer, const std::string& key, bool fallback) const {
        if (!object.contains(key)) return fallback;
        if (!object.at(key).is_boolean()) fail(layer, "'" + key + "' is " + object.at(key).dump() + ", expected true or false");
        return object.at(key).get<bool>();
    }

    // true, false, or "auto": no bias before a norm that removes a per-channel constant.
    std::optional<bool> bias(const nlohmann::json& object, const LayerSpec& layer) const {
        if (object.contains("bias") && object.at("bias") == "auto") return std::nullopt;
        if (object.contains("bias") && !object.at("bias").is_boolean()) {
            fail(layer, "'bias' is " + object.at("bias").dump() + ", expected true, false or \"auto\"");
        }
        return boolean(object, layer, "bias", true);
    }

    // (H + 2 padding - kernel) / stride + 1 for each side, for a window that fits.
    Shape windowed(const LayerSpec& layer, std::size_t channels) const {
        const std::size_t h = layer.input[1] + 2 * layer.padding, w = layer.input[2] + 2 * layer.padding;
        if (layer.kernel > h || layer.kernel > w) {
            fail(layer, "the kernel " + std::to_string(layer.kernel) + " is larger than the input's " + std::to_string(h) + " x " +
                            std::to_string(w) + (layer.padding ? " (padded)" : ""));
        }
        return {channels, (h - layer.kernel) / layer.stride + 1, (w - layer.kernel) / layer.stride + 1};
    }

    void require_images(const LayerSpec& layer) const {
        if (layer.input.size() != 3) {
            fail(layer, "a " + layer.type_name + " takes (N, C, H, W), and its input is flat (after a flatten or a linear)");
        }
    }

    void read_settings(const nlohmann::json& object, LayerSpec& layer) const {
        switch (layer.type) {
            case LayerType::conv:
                require_images(layer);
                layer.width = whole(object, layer, "out_channels", width_range);
                layer.kernel = whole(object, layer, "kernel", window_range);
                layer.stride = whole(object, layer, "stride", window_range, 1);
                layer.padding = whole(object, layer, "padding", padding_range, 0);
                layer.bias = bias(object, layer);
                layer.weight_standardization = boolean(object, layer, "weight_standardization", false);
                layer.output = windowed(layer, layer.width);
                return;
            case LayerType::linear:
                if (layer.input.size() != 1) fail(layer, "a linear takes (N, features): put a flatten before it");
                layer.width = whole(object, layer, "out_features", width_range);
                layer.bias = bias(object, layer);
                layer.output = {layer.width};
                return;
            case LayerType::norm: return read_norm(object, layer);
            case LayerType::maxpool:
                require_images(layer);
                layer.kernel = whole(object, layer, "kernel", window_range);
                layer.stride = whole(object, layer, "stride", window_range, layer.kernel);
                layer.output = windowed(layer, layer.input[0]);
                return;
            case LayerType::dropout:
                if (object.contains("p")) {
                    const nlohmann::json& p = object.at("p");
                    if (!p.is_number() || !model_range::dropout.contains(p.get<double>())) {
                        fail(layer, "'p' is " + p.dump() + ", expected " + model_range::dropout.words());
                    }
                    layer.p = p.get<double>();
                }
                return;
            case LayerType::flatten: {
                std::size_t features = 1;
                for (std::size_t d : layer.input) features *= d;
                layer.output = {features};
                return;
            }
            case LayerType::residual:
                if (!object.contains("layers")) fail(layer, "no key 'layers', the block's body");
                layer.body = read_list(object.at("layers"), layer.where + ".layers", layer.input);
                if (layer.body.back().output != layer.input) {
                    fail(layer, "the body's output " + batch_shape(layer.body.back().output) +
                                    " has not the shape of the block's input, which the skip connection adds to it");
                }
                return;
            case LayerType::relu:
            case LayerType::sigmoid:
            case LayerType::tanh: return;
        }
    }

    void read_norm(const nlohmann::json& object, LayerSpec& layer) const {
        layer.optional = boolean(object, layer, "optional", false);
        if (object.contains("kind")) {
            const nlohmann::json& kind = object.at("kind");
            if (!kind.is_string() || std::find(norm_names().begin(), norm_names().end(), kind.get<std::string>()) == norm_names().end()) {
                fail(layer, "'kind' is " + kind.dump() + ", expected one of " + joined(norm_names()));
            }
            layer.kind = parse_norm(kind.get<std::string>());
        }
        const auto setting_of = [&](const std::string& key, Norm norm) {
            if (object.contains(key) && layer.kind != norm) {
                fail(layer, "'" + key + "' applies to \"kind\": \"" + norm_name(norm) + "\" only, and this norm's kind is " +
                                (layer.kind ? "\"" + norm_name(*layer.kind) + "\"" : "the run's --norm (no \"kind\")"));
            }
        };
        setting_of("groups", Norm::group);
        setting_of("ghost_batch", Norm::ghost);
        if (object.contains("groups")) {
            layer.groups = whole(object, layer, "groups", model_range::norm_groups);
            const std::size_t channels = layer.input[0];
            if (channels % *layer.groups != 0) {
                fail(layer, "'groups' " + std::to_string(*layer.groups) + " does not divide its " + std::to_string(channels) + " channels");
            }
        }
        if (layer.kind == Norm::ghost) layer.ghost_batch = whole(object, layer, "ghost_batch", model_range::ghost_batch);
        if (layer.kind && layer.input.size() == 1 && !layer.optional) {
            if (auto why = why_no_norm_after_linear(*layer.kind)) {
                fail(layer, "kind " + norm_name(*layer.kind) + " has no layer on (N, features): " + *why +
                                " (\"optional\": true leaves it out)");
            }
        }
    }

    std::string source_;
};

// Builds the layers of a spec, each norm as the run's ModelConfig or the layer's own kind says.
class SpecBuilder {
public:
    SpecBuilder(const ModelConfig& run, Rng& rng) : run_(run), rng_(rng) {}

    void add(Sequential<float>& model, const std::vector<LayerSpec>& layers) const {
        for (std::size_t i = 0; i < layers.size(); ++i) {
            const LayerSpec& layer = layers[i];
            const LayerSpec* next = i + 1 < layers.size() ? &layers[i + 1] : nullptr;
            const LayerSpec* after_next = i + 2 < layers.size() ? &layers[i + 2] : nullptr;
            try {
                i += add_layer(model, layer, next, after_next);
            } catch (const std::invalid_argument& e) {
                throw std::invalid_argument(run_.spec_source + ": " + layer.where + " (" + layer.type_name + ", input " +
                                            batch_shape(layer.input) + "): " + e.what());
            }
        }
    }

private:
    // The settings of a norm layer: the run's, or those of the layer's own kind.
    ModelConfig norm_config(const LayerSpec& layer) const {
        ModelConfig c = run_;
        if (!layer.kind) return c;
        c.norm = *layer.kind;
        c.sync_bn = run_.sync_bn && c.norm == Norm::batch;
        if (layer.groups) c.norm_groups = *layer.groups;
        if (layer.ghost_batch) c.ghost_batch = *layer.ghost_batch;
        return c;
    }

    bool has_bias(const LayerSpec& layer, const LayerSpec* next) const {
        if (layer.bias) return *layer.bias;
        return !(next && next->type == LayerType::norm && removes_channel_constant(norm_config(*next).norm));
    }

    // Appends `layer`; returns how many of the layers after it it took too: a norm's nonlinearity,
    // and a 2×2 max pool at stride 2 after that (the seed CNN's pooling).
    std::size_t add_layer(Sequential<float>& model, const LayerSpec& layer, const LayerSpec* next,
                          const LayerSpec* after_next) const {
        switch (layer.type) {
            case LayerType::conv:
                model.add(layer.name, std::make_shared<Conv2d<float>>(
                                          layer.input[0], layer.width, layer.kernel,
                                          Conv2dOptions{.stride = layer.stride,
                                                        .padding = layer.padding,
                                                        .bias = has_bias(layer, next),
                                                        .weight_standardization = layer.weight_standardization},
                                          rng_));
                return 0;
            case LayerType::linear:
                model.add(layer.name, std::make_shared<Linear<float>>(layer.input[0], layer.width, has_bias(layer, next), rng_));
                return 0;
            case LayerType::norm: {
                const ModelConfig config = norm_config(layer);
                if (layer.input.size() == 1 && !layer.optional) {
                    if (auto why = why_no_norm_after_linear(config.norm)) {
                        throw std::invalid_argument("--norm " + norm_name(config.norm) + " has no layer on (N, features): " + *why +
                                                    " (\"optional\": true leaves it out)");
                    }
                }
                const std::optional<Activation> activation = next ? activation_of(next->type) : std::nullopt;
                const bool pool = activation && after_next && after_next->type == LayerType::maxpool &&
                                  after_next->kernel == 2 && after_next->stride == 2;
                add_norm_activation(model, config,
                                    {layer.name, layer.input, activation, activation ? next->name : "",
                                     pool ? std::optional(after_next->name) : std::nullopt});
                return pool ? 2 : activation ? 1 : 0;
            }
            case LayerType::relu:
            case LayerType::sigmoid:
            case LayerType::tanh: model.add(layer.name, make_activation(*activation_of(layer.type))); return 0;
            case LayerType::maxpool: model.add(layer.name, std::make_shared<MaxPool2d<float>>(layer.kernel, layer.stride)); return 0;
            case LayerType::dropout: add_dropout(model, layer.name, layer.p.value_or(run_.dropout)); return 0;
            case LayerType::flatten: model.add(layer.name, std::make_shared<Flatten<float>>()); return 0;
            case LayerType::residual: {
                auto body = std::make_shared<Sequential<float>>();
                add(*body, layer.body);
                model.add(layer.name, std::make_shared<Residual<float>>(body));
                return 0;
            }
        }
        throw std::invalid_argument("no layer type has the value " + std::to_string(static_cast<int>(layer.type)));
    }

    const ModelConfig& run_;
    Rng& rng_;
};

}  // namespace

nlohmann::json load_model_spec(const std::filesystem::path& file) {
    nlohmann::json spec = read_json_file(file);
    check_model_spec(spec, file.string());
    return spec;
}

void use_model_spec(ModelConfig& model, const std::filesystem::path& file) {
    model.spec = load_model_spec(file);
    model.name = spec_model_name;
    model.spec_source = file.string();
}

void check_model_spec(const nlohmann::json& spec, const std::string& source) { SpecReader(source).read(spec); }

bool spec_takes_flat_input(const nlohmann::json& spec) { return spec.at("input") == nlohmann::json(flat_image_shape); }

std::shared_ptr<Sequential<float>> build_spec_model(const ModelConfig& config, Rng& rng) {
    const std::vector<LayerSpec> layers = SpecReader(config.spec_source).read(config.spec);
    auto model = std::make_shared<Sequential<float>>();
    SpecBuilder(config, rng).add(*model, layers);
    return model;
}

}  // namespace xgrad
