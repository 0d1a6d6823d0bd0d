#include "experiments/models.hpp"

#include <stdexcept>

#include "experiments/model_spec.hpp"
#include "experiments/norm_activation.hpp"
#include "layers/activations.hpp"
#include "layers/conv2d.hpp"
#include "layers/dropout.hpp"
#include "layers/linear.hpp"
#include "layers/submodules.hpp"

namespace xgrad {

namespace {

// Re-draws every Linear and Conv2d weight from N(0, sigma) and zeroes their biases, for the
// initialization experiments; norm layers keep their own init (gamma = 1, beta = 0).
template <class Layer>
bool gaussian_init_if(Module<float>& module, double sigma, Rng& rng) {
    auto* layer = dynamic_cast<Layer*>(&module);
    if (!layer) return false;
    normal_(layer->weight().mutable_value(), 0.0, sigma, rng);
    if (layer->bias()) layer->bias()->mutable_value().fill(0.0f);
    return true;
}

void gaussian_init(Sequential<float>& model, double sigma, Rng& rng) {
    for (Module<float>* module : submodules(model)) {
        gaussian_init_if<Linear<float>>(*module, sigma, rng) || gaussian_init_if<Conv2d<float>>(*module, sigma, rng);
    }
}

// The generators of the random layers (Dropout, noise), seeded after every initialization draw:
// a model with them and its twin without, of the same seed, start from the same weights.
void seed_random_layers(Sequential<float>& model, Rng& rng) {
    for (Module<float>* module : submodules(model)) {
        if (Rng* generator = module->generator()) generator->seed(rng.next_seed());
    }
}

std::shared_ptr<Sequential<float>> seed_cnn(const ModelConfig& c, std::size_t fc1_in_features, Rng& rng) {
    auto m = std::make_shared<Sequential<float>>();
    m->add("conv1", std::make_shared<Conv2d<float>>(1, 32, 3, 1, 1, true, rng));
    add_norm_activation(*m, c, {"bn1", {32, 28, 28}, Activation::relu, "relu1", "pool1"});
    m->add("conv2", std::make_shared<Conv2d<float>>(32, 64, 3, 1, 1, true, rng));
    add_norm_activation(*m, c, {"bn2", {64, 14, 14}, Activation::relu, "relu2", "pool2"});
    m->add("flatten", std::make_shared<Flatten<float>>());
    m->add("fc1", std::make_shared<Linear<float>>(fc1_in_features, 128, true, rng));
    add_norm_activation(*m, c, {"bn_fc1", {128}, Activation::relu, "relu3"});
    add_dropout(*m, "dropout", c.dropout);
    m->add("fc2", std::make_shared<Linear<float>>(128, 10, true, rng));
    return m;
}

std::shared_ptr<Sequential<float>> paper_mlp(const ModelConfig& c, Rng& rng) {
    if (auto why = why_no_norm_after_linear(c.norm)) {
        throw std::invalid_argument("paper-mlp has its norm layers after Linear layers only, which --norm " + norm_name(c.norm) +
                                    " does not normalize: " + *why);
    }
    auto m = std::make_shared<Sequential<float>>();
    std::size_t width = 784;
    for (int layer = 1; layer <= 3; ++layer) {
        const std::string i = std::to_string(layer);
        // A norm that subtracts any per-feature constant makes a bias before it redundant: its beta
        // takes the bias's place. GroupNorm and LayerNorm leave the features' differences, so the
        // bias stays.
        m->add("fc" + i, std::make_shared<Linear<float>>(width, 100, !removes_channel_constant(c.norm), rng));
        add_norm_activation(*m, c, {"bn" + i, {100}, Activation::sigmoid, "sigmoid" + i});
        add_dropout(*m, "dropout" + i, c.dropout);
        width = 100;
    }
    m->add("fc4", std::make_shared<Linear<float>>(width, 10, true, rng));
    return m;
}

}  // namespace

const std::vector<std::string>& model_names() {
    static const std::vector<std::string> names{"seed-cnn", "seed-cnn-verbatim", "paper-mlp"};
    return names;
}

bool model_takes_flat_input(const ModelConfig& config) {
    if (config.name == spec_model_name) return spec_takes_flat_input(config.spec);
    return config.name == "paper-mlp";
}

void add_dropout(Sequential<float>& model, const std::string& name, double p) {
    if (p > 0.0) model.add(name, std::make_shared<Dropout<float>>(p, 0));
}

std::shared_ptr<Sequential<float>> make_model(const ModelConfig& config, Rng& rng) {
    if (config.noisy_bn && config.norm == Norm::none) {
        throw std::invalid_argument("noisy BN adds noise after the norm layers, so it needs a normalization (--norm none given)");
    }
    if (config.noisy_bn && config.norm == Norm::frn) {
        throw std::invalid_argument("noisy BN adds noise between the norm layer and its nonlinearity, and FRN's layer ends in its "
                                    "nonlinearity, the TLU (--norm frn given)");
    }
    check_norm_settings(config);
    std::shared_ptr<Sequential<float>> model;
    if (config.name == spec_model_name) {
        model = build_spec_model(config, rng);
    } else if (config.name == "seed-cnn") {
        model = seed_cnn(config, 64 * 7 * 7, rng);
    } else if (config.name == "seed-cnn-verbatim") {
        model = seed_cnn(config, 64 * 28 * 28, rng);  // as the seed declares it: wrong after two poolings
    } else if (config.name == "paper-mlp") {
        model = paper_mlp(config, rng);
    } else {
        std::string known;
        for (const auto& n : model_names()) known += (known.empty() ? "" : ", ") + n;
        throw std::invalid_argument("unknown model '" + config.name + "' (known: " + known + ")");
    }
    if (config.init_sigma) gaussian_init(*model, *config.init_sigma, rng);
    seed_random_layers(*model, rng);
    return model;
}

}  // namespace xgrad
