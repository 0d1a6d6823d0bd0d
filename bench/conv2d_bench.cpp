// Conv2d<float> (3×3, stride 1, padding 1, with bias) on its own backend at the seed CNN's two
// shapes (arguments N, C_in, C_out, H = W, threads): conv1 takes the images (no input gradient),
// conv2 the pooled activations (with one). forward, forward + backward, and beside them the GEMM
// floor: the products forward + backward made (bench/gemm_floor.hpp), replayed alone at their own
// shapes in the same binary. Counter "flops": the products' FLOPs per iteration.
#include <cstddef>
#include <vector>

#include <benchmark/benchmark.h>
#include <xtensor/xadapt.hpp>

#include "bench/bench_tensors.hpp"
#include "bench/gemm_floor.hpp"
#include "layers/conv2d.hpp"
#include "layers/init.hpp"

namespace {

using xgrad::Var;

struct Convolution {
    std::size_t n, c, out, h;
    xgrad::Rng rng{0};
    xgrad::Conv2d<float> conv;
    Var<float> x;
    xt::xarray<float> dy;

    explicit Convolution(const benchmark::State& state)
        : n(static_cast<std::size_t>(state.range(0))),
          c(static_cast<std::size_t>(state.range(1))),
          out(static_cast<std::size_t>(state.range(2))),
          h(static_cast<std::size_t>(state.range(3))),
          conv(c, out, 3, 1, 1, true, rng),
          // The images need no gradient; a later layer's input does.
          x(xt::adapt(xgrad_bench::random_vector(n * c * h * h, 1, 0.0f), std::vector<std::size_t>{n, c, h, h}),
            c > 1),
          dy(xt::adapt(xgrad_bench::random_vector(n * out * h * h, 2, 0.0f), std::vector<std::size_t>{n, out, h, h})) {
        conv.train();
    }

    void forward() { benchmark::DoNotOptimize(conv(x).value().data()); }

    void forward_backward() {
        conv.zero_grad();
        x.zero_grad();
        conv(x).backward(dy);
        benchmark::DoNotOptimize(conv.parameters()[0].grad().data());
    }
};

constexpr int kThreadsArg = 4;

template <class Run>
void time_runs(benchmark::State& state, double flops, Run run) {
    for (int i = 0; i < 3; ++i) run();
    for (auto _ : state) run();
    state.counters["flops"] = flops;
}

// The FLOPs of the products one call of `run` makes.
template <class Run>
double products_flops(Run run) {
    return xgrad_bench::total_flops(xgrad_bench::recorded_products(run));
}

void BM_conv2d_forward(benchmark::State& state) {
    const auto threads = xgrad_bench::threads_of(state, kThreadsArg);
    Convolution conv(state);
    const auto run = [&] { conv.forward(); };
    time_runs(state, products_flops(run), run);
}

void BM_conv2d_forward_backward(benchmark::State& state) {
    const auto threads = xgrad_bench::threads_of(state, kThreadsArg);
    Convolution conv(state);
    const auto run = [&] { conv.forward_backward(); };
    time_runs(state, products_flops(run), run);
}

void BM_conv2d_gemm_floor(benchmark::State& state) {
    const auto threads = xgrad_bench::threads_of(state, kThreadsArg);
    Convolution conv(state);
    xgrad_bench::ProductRunner runner(xgrad_bench::recorded_products([&] { conv.forward_backward(); }));
    time_runs(state, runner.flops(), [&] { runner.run(); });
}

void seed_cnn_shapes(benchmark::internal::Benchmark* b) {
    b->ArgNames({"N", "C", "O", "H", "threads"});
    for (int threads : {1, 2}) {
        b->Args({64, 1, 32, 28, threads});
        b->Args({64, 32, 64, 14, threads});
    }
    b->UseRealTime()->Unit(benchmark::kMicrosecond);
}

BENCHMARK(BM_conv2d_forward)->Apply(seed_cnn_shapes);
BENCHMARK(BM_conv2d_forward_backward)->Apply(seed_cnn_shapes);
BENCHMARK(BM_conv2d_gemm_floor)->Apply(seed_cnn_shapes);

}  // namespace
