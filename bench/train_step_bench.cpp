// One training step of the experiments' models, as the trainer takes it (zero_grad, forward,
// cross-entropy, backward, optimizer step), on a fixed random batch:
//   seed-cnn   batch 64, Adam (lr 1e-3), as `bash setup.sh main` trains it
//   paper-mlp  batch 60, SGD (lr 0.1), as the paper's MNIST experiment
// Argument: threads (TBB's limit; OpenBLAS runs single-threaded inside TBB's parts of a product).
// items_per_second is images per second; the context line blas_kernels names the CPU whose
// OpenBLAS kernels ran. With the same threads (bench/gemm_floor.hpp), BM_gemm_floor_* times only
// the products the step makes, at their own shapes: the step's floor (of the own convolutions:
// BM_train_step_seed_cnn_onednn runs them in oneDNN, layers/conv_backend.hpp); BM_layer_products_* one
// product per layer and pass over the whole batch instead. All report the step's FLOPs as the
// counter "flops". bench/compare_torch.py times the same models, optimizers and threads in
// PyTorch.
#include <cstddef>
#include <memory>
#include <string>
#include <vector>

#include <benchmark/benchmark.h>
#include <tbb/global_control.h>
#include <xtensor/xrandom.hpp>

#include "bench/gemm_floor.hpp"
#include "bench/step_optimizer.hpp"
#include "experiments/models.hpp"
#include "layers/conv_backend.hpp"
#include "layers/cross_entropy.hpp"

namespace {

using namespace xgrad;

// A model, its optimizer and one batch of N(0, 1) images with labels 0..9. The images are a
// constant Var made once, as compare_torch.py's PyTorch step takes its tensor: the step does not
// copy its input.
struct Step {
    std::shared_ptr<Sequential<float>> model;
    std::unique_ptr<Optimizer<float>> optimizer;
    Var<float> images{xt::xarray<float>()};
    xt::xarray<std::int64_t> labels;

    Step(const std::string& name, std::size_t batch) {
        Rng rng(0);
        ModelConfig config;
        config.name = name;
        model = make_model(config, rng);
        optimizer = xgrad_bench::step_optimizer(name, model->parameters());
        xt::random::seed(0);
        const auto shape = model_takes_flat_input(config) ? std::vector<std::size_t>{batch, 784}
                                                        : std::vector<std::size_t>{batch, 1, 28, 28};
        images = Var<float>(xt::xarray<float>(xt::random::randn<float>(shape)));
        labels = xt::random::randint<std::int64_t>({batch}, 0, 10);
        model->train();
    }

    void run() {
        optimizer->zero_grad();
        const Var<float> loss = cross_entropy((*model)(images), labels);
        loss.backward();
        optimizer->step();
    }
};

// Times `run` after three untimed calls (buffers allocated, caches warm), as images per second.
template <class Run>
void time_steps(benchmark::State& state, std::size_t batch, double flops, Run run) {
    for (int i = 0; i < 3; ++i) run();
    for (auto _ : state) run();
    state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * batch));
    state.counters["flops"] = flops;
}

void train_step(benchmark::State& state, const std::string& name, std::size_t batch,
                ConvBackend backend = ConvBackend::own) {
    if (backend == ConvBackend::onednn && !onednn_convolution_available()) {
        state.SkipWithError("this build has no oneDNN (meson option onednn)");
        return;
    }
    tbb::global_control limit(tbb::global_control::max_allowed_parallelism, static_cast<std::size_t>(state.range(0)));
    Step step(name, batch);
    // Counted on the own backend, whose every product is logged as a gemm call: the same FLOPs for both.
    const double flops = xgrad_bench::total_flops(xgrad_bench::recorded_products([&] { step.run(); }));
    const ConvBackendScope backend_scope(backend);
    time_steps(state, batch, flops, [&] { step.run(); });
}

// Times the products `choose` picks for the step alone.
template <class Choose>
void products(benchmark::State& state, const std::string& name, std::size_t batch, Choose choose) {
    tbb::global_control limit(tbb::global_control::max_allowed_parallelism, static_cast<std::size_t>(state.range(0)));
    Step step(name, batch);
    xgrad_bench::ProductRunner runner(choose(step));
    time_steps(state, batch, runner.flops(), [&] { runner.run(); });
}

void gemm_floor(benchmark::State& state, const std::string& name, std::size_t batch) {
    products(state, name, batch, [](Step& step) { return xgrad_bench::recorded_products([&] { step.run(); }); });
}

void layer_products(benchmark::State& state, const std::string& name, std::size_t batch) {
    products(state, name, batch, [](Step& step) { return xgrad_bench::layer_products(*step.model, step.images.value()); });
}

void BM_train_step_seed_cnn(benchmark::State& state) { train_step(state, "seed-cnn", 64); }
void BM_train_step_seed_cnn_onednn(benchmark::State& state) { train_step(state, "seed-cnn", 64, ConvBackend::onednn); }
void BM_train_step_paper_mlp(benchmark::State& state) { train_step(state, "paper-mlp", 60); }
void BM_gemm_floor_seed_cnn(benchmark::State& state) { gemm_floor(state, "seed-cnn", 64); }
void BM_gemm_floor_paper_mlp(benchmark::State& state) { gemm_floor(state, "paper-mlp", 60); }
void BM_layer_products_seed_cnn(benchmark::State& state) { layer_products(state, "seed-cnn", 64); }
void BM_layer_products_paper_mlp(benchmark::State& state) { layer_products(state, "paper-mlp", 60); }

BENCHMARK(BM_train_step_seed_cnn)->ArgName("threads")->Arg(1)->Arg(2)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_train_step_seed_cnn_onednn)->ArgName("threads")->Arg(1)->Arg(2)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_gemm_floor_seed_cnn)->ArgName("threads")->Arg(1)->Arg(2)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_layer_products_seed_cnn)->ArgName("threads")->Arg(1)->Arg(2)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_train_step_paper_mlp)->ArgName("threads")->Arg(1)->Arg(2)->Unit(benchmark::kMicrosecond)->UseRealTime();
BENCHMARK(BM_gemm_floor_paper_mlp)->ArgName("threads")->Arg(1)->Arg(2)->Unit(benchmark::kMicrosecond)->UseRealTime();
BENCHMARK(BM_layer_products_paper_mlp)->ArgName("threads")->Arg(1)->Arg(2)->Unit(benchmark::kMicrosecond)->UseRealTime();

}  // namespace
