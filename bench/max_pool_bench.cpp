// MaxPool2d(2) as the seed CNN runs it, float, at its two shapes (arguments N, C, H = W, threads):
// forward in training (y and the arg-max of each window), and forward + backward. bytes_per_second
// and x_copy (bench/copy_floor.hpp) count the minimal traffic: forward x in, y out; forward +
// backward x in, y out, dy in, dx out. The arg-max the backward needs is extra traffic, and shows
// in x_copy.
// Then the block before it in the seed CNN, BatchNorm2d + ReLU + MaxPool2d(2) in training, as one
// node (BatchNormReLUMaxPool2d) and as the two layers the model had (BatchNormReLU2d, then
// MaxPool2d), forward and forward + backward, with the same minimal traffic: the normalized
// tensor and its gradient, which only the two layers write, show in their x_copy.
#include <cstddef>
#include <vector>

#include <benchmark/benchmark.h>
#include <xtensor/xadapt.hpp>

#include "bench/bench_tensors.hpp"
#include "bench/copy_floor.hpp"
#include "layers/batch_norm_relu_max_pool.hpp"
#include "layers/max_pool2d.hpp"
#include "layers/normalization/batch_norm.hpp"

namespace {

using xgrad::Var;

struct Pooling {
    std::size_t n, c, h;
    xgrad::MaxPool2d<float> pool{2};
    Var<float> x;
    xt::xarray<float> dy;

    explicit Pooling(const benchmark::State& state)
        : n(static_cast<std::size_t>(state.range(0))),
          c(static_cast<std::size_t>(state.range(1))),
          h(static_cast<std::size_t>(state.range(2))),
          x(xt::adapt(xgrad_bench::random_vector(n * c * h * h, 1, 0.0f), std::vector<std::size_t>{n, c, h, h}), true),
          dy(xt::adapt(xgrad_bench::random_vector(n * c * h * h / 4, 2, 0.0f), std::vector<std::size_t>{n, c, h / 2, h / 2})) {}

    std::size_t input_bytes() const { return n * c * h * h * sizeof(float); }
};

void BM_max_pool2d_forward(benchmark::State& state) {
    const auto threads = xgrad_bench::threads_of(state);
    Pooling p(state);
    for (auto _ : state) benchmark::DoNotOptimize(p.pool(p.x).value().data());
    xgrad_bench::set_traffic_counters(state, p.input_bytes() * 5 / 4, static_cast<int>(state.range(3)));
}

void BM_max_pool2d_forward_backward(benchmark::State& state) {
    const auto threads = xgrad_bench::threads_of(state);
    Pooling p(state);
    for (auto _ : state) {
        p.x.zero_grad();
        p.pool(p.x).backward(p.dy);
        benchmark::DoNotOptimize(p.x.grad().data());
    }
    xgrad_bench::set_traffic_counters(state, p.input_bytes() * 5 / 2, static_cast<int>(state.range(3)));
}

// BN + ReLU + pooling as the fused node or as BatchNormReLU2d then MaxPool2d(2), in training.
struct NormalizedPooling : Pooling {
    xgrad::BatchNormReLUMaxPool2d<float> fused_layer;
    xgrad::BatchNormReLU2d<float> norm;

    explicit NormalizedPooling(const benchmark::State& state) : Pooling(state), fused_layer(c), norm(c) {}
    Var<float> operator()(bool fused) { return fused ? fused_layer(x) : pool(norm(x)); }
};

void BM_bn_relu_max_pool2d_forward(benchmark::State& state, bool fused) {
    const auto threads = xgrad_bench::threads_of(state);
    NormalizedPooling p(state);
    for (auto _ : state) benchmark::DoNotOptimize(p(fused).value().data());
    xgrad_bench::set_traffic_counters(state, p.input_bytes() * 5 / 4, static_cast<int>(state.range(3)));
}

void BM_bn_relu_max_pool2d_forward_backward(benchmark::State& state, bool fused) {
    const auto threads = xgrad_bench::threads_of(state);
    NormalizedPooling p(state);
    for (auto _ : state) {
        p.x.zero_grad();
        p(fused).backward(p.dy);
        benchmark::DoNotOptimize(p.x.grad().data());
    }
    xgrad_bench::set_traffic_counters(state, p.input_bytes() * 5 / 2, static_cast<int>(state.range(3)));
}

void seed_cnn_shapes(benchmark::internal::Benchmark* b) {
    b->ArgNames({"N", "C", "H", "threads"});
    for (int threads : {1, 2}) {
        b->Args({64, 32, 28, threads});
        b->Args({64, 64, 14, threads});
    }
    b->UseRealTime();
}

BENCHMARK(BM_max_pool2d_forward)->Apply(seed_cnn_shapes);
BENCHMARK(BM_max_pool2d_forward_backward)->Apply(seed_cnn_shapes);
BENCHMARK_CAPTURE(BM_bn_relu_max_pool2d_forward, fused, true)->Apply(seed_cnn_shapes);
BENCHMARK_CAPTURE(BM_bn_relu_max_pool2d_forward, unfused, false)->Apply(seed_cnn_shapes);
BENCHMARK_CAPTURE(BM_bn_relu_max_pool2d_forward_backward, fused, true)->Apply(seed_cnn_shapes);
BENCHMARK_CAPTURE(BM_bn_relu_max_pool2d_forward_backward, unfused, false)->Apply(seed_cnn_shapes);

}  // namespace
