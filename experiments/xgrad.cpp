// The xgrad command line.
#include <iostream>

#include <CLI/CLI.hpp>

#include "experiments/mlp_demo.hpp"

int main(int argc, char** argv) {
    CLI::App app{"xgrad: reverse-mode autodiff and Batch Normalization experiments"};
    app.require_subcommand(1);

    xgrad::MlpDemoConfig demo;
    CLI::App* demo_cmd = app.add_subcommand("demo", "Train a small ReLU MLP on a synthetic spirals task and print the loss falling");
    demo_cmd->add_option("--steps", demo.steps, "SGD steps")->capture_default_str();
    demo_cmd->add_option("--batch", demo.batch, "Batch size")->capture_default_str();
    demo_cmd->add_option("--lr", demo.lr, "Learning rate")->capture_default_str();
    demo_cmd->add_option("--seed", demo.seed, "Seed of data, initialization and shuffling")->capture_default_str();

    CLI11_PARSE(app, argc, argv);
    try {
        if (*demo_cmd) {
            const double acc = xgrad::run_mlp_demo(demo, std::cout);
            std::cout << "final training accuracy: " << acc << "\n";
        }
    } catch (const std::exception& e) {
        std::cerr << "xgrad: error: " << e.what() << "\n";
        return 1;
    }
    return 0;
}
