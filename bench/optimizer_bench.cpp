// One optimizer step over the parameters of an experiments' model, with the gradients of one
// training step (bench/train_step_bench.cpp times the whole step): Adam (lr 1e-3) and SGD with
// momentum 0.9 over seed-cnn's parameters, plain SGD (lr 0.1) over paper-mlp's, as they train.
// Argument: threads. bytes_per_second and x_copy (bench/copy_floor.hpp) count the minimal traffic
// per element: Adam reads the gradient, the parameter and both moments and writes back the last
// three (7 values); SGD with momentum reads 3 and writes 2; plain SGD reads 2 and writes 1.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <benchmark/benchmark.h>
#include <xtensor/xrandom.hpp>

#include "bench/bench_tensors.hpp"
#include "bench/copy_floor.hpp"
#include "experiments/models.hpp"
#include "layers/adam.hpp"
#include "layers/cross_entropy.hpp"
#include "layers/sgd.hpp"

namespace {

using namespace xgrad;

// The optimizer over the model's parameters, holding the gradients of one step on a random batch.
template <class MakeOptimizer>
void time_optimizer_step(benchmark::State& state, const std::string& name, std::size_t values_moved,
                         MakeOptimizer make_optimizer) {
    const auto threads = xgrad_bench::threads_of(state, 0);
    Rng rng(0);
    ModelConfig config;
    config.name = name;
    const auto model = make_model(config, rng);
    const auto optimizer = make_optimizer(model->parameters());
    xt::random::seed(0);
    const auto shape = model_takes_flat_input(config) ? std::vector<std::size_t>{64, 784}
                                                    : std::vector<std::size_t>{64, 1, 28, 28};
    model->train();
    cross_entropy((*model)(Var<float>(xt::random::randn<float>(shape))), xt::random::randint<std::int64_t>({64}, 0, 10))
        .backward();
    std::size_t elements = 0;
    for (const auto& p : model->parameters()) elements += p.value().size();
    optimizer->step();  // moments allocated
    for (auto _ : state) optimizer->step();
    state.counters["parameters"] = static_cast<double>(elements);
    xgrad_bench::set_traffic_counters(state, elements * values_moved * sizeof(float), static_cast<int>(state.range(0)));
}

void BM_adam_step_seed_cnn(benchmark::State& state) {
    time_optimizer_step(state, "seed-cnn", 7, [](std::vector<Var<float>> p) {
        return std::make_unique<Adam<float>>(std::move(p), AdamOptions{.lr = 1e-3});
    });
}

void BM_sgd_momentum_step_seed_cnn(benchmark::State& state) {
    time_optimizer_step(state, "seed-cnn", 5, [](std::vector<Var<float>> p) {
        return std::make_unique<SGD<float>>(std::move(p), SgdOptions{.lr = 0.01, .momentum = 0.9});
    });
}

void BM_sgd_step_paper_mlp(benchmark::State& state) {
    time_optimizer_step(state, "paper-mlp", 3, [](std::vector<Var<float>> p) {
        return std::make_unique<SGD<float>>(std::move(p), SgdOptions{.lr = 0.1});
    });
}

BENCHMARK(BM_adam_step_seed_cnn)->ArgName("threads")->Arg(1)->Arg(2)->UseRealTime();
BENCHMARK(BM_sgd_momentum_step_seed_cnn)->ArgName("threads")->Arg(1)->Arg(2)->UseRealTime();
BENCHMARK(BM_sgd_step_paper_mlp)->ArgName("threads")->Arg(1)->Arg(2)->UseRealTime();

}  // namespace
