// BatchNorm's kernels, the normalization stages composed over Grouping::per_channel
// (layers/normalization/normalize.hpp), timed directly, without the graph: forward-train,
// backward-train and both in a row at the shapes of bench/bn_shapes.hpp, and a copy
// of the same bytes as the bandwidth reference, all in this binary so the ratios come from one
// run, with the floors of BN's passes in cache (each channel read, then written from cache).
// Arguments: N, C, S (= H*W), threads. bytes_per_second counts each kernel's minimal traffic
// (forward: read x, write y; backward: read dy and x, write dx), and x_copy is the time over the
// copy floor of that traffic (bench/copy_floor.hpp).
#include <array>
#include <cstddef>
#include <vector>

#include <benchmark/benchmark.h>

#include "bench/bench_tensors.hpp"
#include "bench/bn_shapes.hpp"
#include "bench/copy_floor.hpp"
#include "bench/two_pass_floor.hpp"
#include "layers/normalization/epilogue.hpp"
#include "layers/normalization/normalize.hpp"

namespace {

using xgrad::ChannelShape;
using xgrad_bench::random_vector;
using xgrad_bench::shape_of;
using xgrad_bench::threads_of;

// Counters from the kernel's minimal traffic: `tensors` tensors of the shape read or written.
void set_traffic(benchmark::State& state, const ChannelShape& s, std::size_t tensors) {
    xgrad_bench::set_traffic_counters(state, tensors * s.size() * sizeof(float), static_cast<int>(state.range(3)));
}

// A copy of x into y spread over the threads (bench/copy_floor.hpp): the bandwidth floor.
void BM_copy(benchmark::State& state) {
    const ChannelShape s = shape_of(state);
    auto threads = threads_of(state);
    const std::vector<float> src = random_vector(s.size(), 1, 0.0f);
    std::vector<float> dst(s.size());
    for (auto _ : state) {
        xgrad_bench::vector_copy(src.data(), dst.data(), s.size() * sizeof(float));
        benchmark::DoNotOptimize(dst.data());
        benchmark::ClobberMemory();
    }
    set_traffic(state, s, 2);
}

// The floors of BN's passes over groups of a channel's size (bench/two_pass_floor.hpp), whose x_copy
// says how far above the copy floor the kernels must be where the tensors are in cache: forward,
// x read, then copied into y; backward, dy and x read, then dx = dy + x; both in a row, as
// BM_forward_backward_train.
void BM_two_pass_floor(benchmark::State& state, bool forwards, bool backwards) {
    const ChannelShape s = shape_of(state);
    auto threads = threads_of(state);
    const std::vector<float> x = random_vector(s.size(), 1, 0.0f), dy = random_vector(s.size(), 2, 0.0f);
    std::vector<float> y(s.size()), dx(s.size());
    const std::array<const float*, 1> forward{x.data()};
    const std::array<const float*, 2> backward{dy.data(), x.data()};
    for (auto _ : state) {
        if (forwards) xgrad_bench::two_pass_floor(forward, y.data(), s.size(), s.per_channel());
        if (backwards) xgrad_bench::two_pass_floor(backward, dx.data(), s.size(), s.per_channel());
        benchmark::DoNotOptimize(y.data());
        benchmark::DoNotOptimize(dx.data());
        benchmark::ClobberMemory();
    }
    set_traffic(state, s, (forwards ? 2 : 0) + (backwards ? 3 : 0));
}

// The tensors of one BN layer at the state's shape (x ~ N(0.5, 1), dy ~ N(0, 1), gamma 1, beta 0)
// and its training-mode kernels, running statistics included, as a training step calls them.
struct Layer {
    ChannelShape s;
    std::vector<float> x, dy, y, dx, gamma, beta, dgamma, dbeta, running_mean, running_var;

    explicit Layer(const benchmark::State& state)
        : s(shape_of(state)), x(random_vector(s.size(), 1, 0.5f)), dy(random_vector(s.size(), 2, 0.0f)), y(s.size()),
          dx(s.size()), gamma(s.c, 1.0f), beta(s.c, 0.0f), dgamma(s.c), dbeta(s.c), running_mean(s.c, 0.0f),
          running_var(s.c, 1.0f) {}

    xgrad::NormalizedBatch forward() {
        xgrad::NormalizeOptions<float> options;
        options.gamma = gamma.data();
        options.beta = beta.data();
        options.running = xgrad::RunningStats<float>{running_mean.data(), running_var.data(), 0.1};
        return xgrad::normalize_batch(xgrad::Grouping::per_channel(s), x.data(), options, xgrad::NoEpilogue{}, y.data());
    }
    void backward(const xgrad::NormalizedBatch& batch) {
        xgrad::normalize_backward(xgrad::Grouping::per_channel(s), batch, xgrad::GradientThrough::batch(), dy.data(),
                                  x.data(), gamma.data(), beta.data(), xgrad::NoEpilogue{},
                                  xgrad::NormalizeGrads<float>{dx.data(), dgamma.data(), dbeta.data()});
    }
};

void BM_forward_train(benchmark::State& state) {
    auto threads = threads_of(state);
    Layer layer(state);
    for (auto _ : state) {
        const auto batch = layer.forward();
        benchmark::DoNotOptimize(batch.norm.mean.data());
        benchmark::DoNotOptimize(layer.y.data());
    }
    set_traffic(state, layer.s, 2);
}

void BM_backward_train(benchmark::State& state) {
    auto threads = threads_of(state);
    Layer layer(state);
    const auto batch = layer.forward();
    for (auto _ : state) {
        layer.backward(batch);
        benchmark::DoNotOptimize(layer.dx.data());
    }
    set_traffic(state, layer.s, 3);
}

// One training step's BN work: forward-train then backward, as oneDNN's and PyTorch's
// forward+backward figures are taken.
void BM_forward_backward_train(benchmark::State& state) {
    auto threads = threads_of(state);
    Layer layer(state);
    for (auto _ : state) {
        layer.backward(layer.forward());
        benchmark::DoNotOptimize(layer.y.data());
        benchmark::DoNotOptimize(layer.dx.data());
    }
    set_traffic(state, layer.s, 5);
}

void shapes(benchmark::internal::Benchmark* b) {
    xgrad_bench::bn_shapes(b);
    b->ArgNames({"N", "C", "S", "threads"});
}

BENCHMARK(BM_copy)->Apply(shapes);
BENCHMARK_CAPTURE(BM_two_pass_floor, forward, true, false)->Apply(shapes);
BENCHMARK_CAPTURE(BM_two_pass_floor, backward, false, true)->Apply(shapes);
BENCHMARK_CAPTURE(BM_two_pass_floor, forward_backward, true, true)->Apply(shapes);
BENCHMARK(BM_forward_train)->Apply(shapes);
BENCHMARK(BM_backward_train)->Apply(shapes);
BENCHMARK(BM_forward_backward_train)->Apply(shapes);

}  // namespace
