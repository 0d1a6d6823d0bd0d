// A program outside xgrad's tree that uses the installed library: a small residual CNN with
// GroupNorm, defined here, trained with Adam on Fashion-MNIST.
//
//   residual_cnn [STEPS] [MIN_ACCURACY]
//
// Prints the training loss every 50 steps and the test accuracy at the end; exits with status 1
// when that accuracy is below MIN_ACCURACY (default 0: any).
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>

#include <xgrad/autodiff/autodiff.hpp>
#include <xgrad/experiments/batch_loader.hpp>
#include <xgrad/experiments/dataset.hpp>
#include <xgrad/experiments/evaluation.hpp>
#include <xgrad/layers/activations.hpp>
#include <xgrad/layers/adam.hpp>
#include <xgrad/layers/conv2d.hpp>
#include <xgrad/layers/cross_entropy.hpp>
#include <xgrad/layers/linear.hpp>
#include <xgrad/layers/max_pool2d.hpp>
#include <xgrad/layers/normalization/group_norm.hpp>
#include <xgrad/layers/sequential.hpp>

using namespace xgrad;

// relu(x + GN(conv(relu(GN(conv(x)))))): a layer of its own, with its parameters named as torch
// would name them ("block1.conv1.weight").
class ResidualBlock : public Module<float> {
public:
    ResidualBlock(std::size_t channels, std::size_t groups, Rng& rng) : channels_(channels) {
        const Conv2dOptions same{.padding = 1, .bias = false};
        conv1_ = register_module("conv1", std::make_shared<Conv2d<float>>(channels, channels, 3, same, rng));
        norm1_ = register_module("norm1", std::make_shared<GroupNorm<float>>(groups, channels));
        conv2_ = register_module("conv2", std::make_shared<Conv2d<float>>(channels, channels, 3, same, rng));
        norm2_ = register_module("norm2", std::make_shared<GroupNorm<float>>(groups, channels));
    }

    Var<float> forward(const Var<float>& x) override {
        const Var<float> h = relu((*norm1_)((*conv1_)(x)));
        return relu(x + (*norm2_)((*conv2_)(h)));
    }

    std::string describe() const override { return "ResidualBlock(" + std::to_string(channels_) + ")"; }

private:
    std::size_t channels_;
    std::shared_ptr<Conv2d<float>> conv1_, conv2_;
    std::shared_ptr<GroupNorm<float>> norm1_, norm2_;
};

std::shared_ptr<Sequential<float>> residual_cnn(Rng& rng) {
    auto model = std::make_shared<Sequential<float>>();
    model->add("stem", std::make_shared<Conv2d<float>>(1, 16, 3, Conv2dOptions{.padding = 1}, rng));
    model->add("stem_norm", std::make_shared<GroupNorm<float>>(4, 16));
    model->add("stem_relu", std::make_shared<ReLU<float>>());
    model->add("block1", std::make_shared<ResidualBlock>(16, 4, rng));
    model->add("pool1", std::make_shared<MaxPool2d<float>>(2));  // 14 x 14
    model->add("block2", std::make_shared<ResidualBlock>(16, 4, rng));
    model->add("pool2", std::make_shared<MaxPool2d<float>>(2));  // 7 x 7
    model->add("flatten", std::make_shared<Flatten<float>>());
    model->add("fc", std::make_shared<Linear<float>>(16 * 7 * 7, 10, true, rng));
    return model;
}

int main(int argc, char** argv) {
    const long steps = argc > 1 ? std::strtol(argv[1], nullptr, 10) : 300;
    const double min_accuracy = argc > 2 ? std::strtod(argv[2], nullptr) : 0.0;
    if (steps < 1) {
        std::fprintf(stderr, "residual_cnn: STEPS must be a whole number >= 1; got '%s'\n", argv[1]);
        return 2;
    }
    try {
        Rng rng(0);
        auto model = residual_cnn(rng);
        const Dataset train_set = load_dataset("fashion-mnist", Split::train);
        const Dataset test_set = load_dataset("fashion-mnist", Split::test);
        BatchLoader loader(train_set, {.batch_size = 64, .seed = 0});
        Adam<float> optimizer(model->parameters(), {.lr = 2e-3});

        for (long step = 1; step <= steps; ++step) {
            const Batch batch = loader.next();
            model->zero_grad();
            const Var<float> loss = cross_entropy((*model)(Var<float>(batch.images)), batch.labels);
            loss.backward();
            optimizer.step();
            if (step % 50 == 0 || step == steps) std::printf("step %ld: training loss %.4f\n", step, loss.value()());
        }
        const Evaluation test = evaluate(*model, test_set, /*flat_input=*/false, 2000);
        std::printf("test accuracy over 2000 images: %.4f\n", test.accuracy);
        return test.accuracy >= min_accuracy ? 0 : 1;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "residual_cnn: %s\n", e.what());
        return 1;
    }
}
