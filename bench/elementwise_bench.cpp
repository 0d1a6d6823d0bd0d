// Forward + backward of relu(a * b + c) three ways: one fused node, three separate nodes, and a
// hand-written loop (the baseline), next to a memcpy of the same size for the machine's bandwidth;
// and of sigmoid(x), a node whose backward reads its output, beside a hand loop with xsimd's exp.
// Arguments: elements, threads (TBB's max_allowed_parallelism). bytes_per_second counts the
// hand loop's minimal traffic for every variant, so the numbers compare directly.
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstring>
#include <random>
#include <vector>

#include <benchmark/benchmark.h>
#include <tbb/blocked_range.h>
#include <tbb/global_control.h>
#include <tbb/parallel_for.h>
#include <xsimd/xsimd.hpp>
#include <xtensor/xarray.hpp>

#include "autodiff/autodiff.hpp"
#include "autodiff/fused_node.hpp"

namespace {

using xgrad::Var;

xt::xarray<float> random_array(std::size_t n, unsigned seed) {
    std::mt19937 rng(seed);
    std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
    xt::xarray<float> out = xt::xarray<float>::from_shape({n});
    std::generate(out.begin(), out.end(), [&] { return dist(rng); });
    return out;
}

// relu(a * b + c): read a, b, c, write y; read g, a, b, c, write da, db, dc.
constexpr std::int64_t relu_affine_arrays = 11;
// sigmoid(x): read x, write y; read g, y, write dx.
constexpr std::int64_t sigmoid_arrays = 5;

void set_bytes(benchmark::State& state, std::size_t n, std::int64_t arrays = relu_affine_arrays) {
    state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) * arrays *
                            static_cast<std::int64_t>(n * sizeof(float)));
}

struct Inputs {
    Var<float> a, b, c;
    xt::xarray<float> seed;
    explicit Inputs(std::size_t n)
        : a(random_array(n, 1), true), b(random_array(n, 2), true), c(random_array(n, 3), true),
          seed(xt::xarray<float>::from_shape({n})) {
        std::fill(seed.begin(), seed.end(), 1.0f);
    }
    void consume_and_zero() {
        for (Var<float>* v : {&a, &b, &c}) {
            benchmark::DoNotOptimize(v->grad().data());
            v->zero_grad();
        }
    }
};

tbb::global_control threads_of(const benchmark::State& state) {
    return tbb::global_control(tbb::global_control::max_allowed_parallelism,
                               static_cast<std::size_t>(state.range(1)));
}

void BM_fused(benchmark::State& state) {
    const auto n = static_cast<std::size_t>(state.range(0));
    auto threads = threads_of(state);
    Inputs in(n);
    for (auto _ : state) {
        Var<float> y = relu(in.a * in.b + in.c);
        y.backward(in.seed);
        in.consume_and_zero();
    }
    set_bytes(state, n);
}

void BM_separate_nodes(benchmark::State& state) {
    const auto n = static_cast<std::size_t>(state.range(0));
    auto threads = threads_of(state);
    Inputs in(n);
    for (auto _ : state) {
        Var<float> t1 = in.a * in.b;
        Var<float> t2 = t1 + in.c;
        Var<float> y = relu(t2);
        y.backward(in.seed);
        in.consume_and_zero();
    }
    set_bytes(state, n);
}

// The same blocks as the fused node, so both split the work alike across threads.
constexpr std::size_t block = xgrad::detail::fused_block;

template <class F>
void for_blocks(std::size_t n, F&& f) {
    tbb::parallel_for(tbb::blocked_range<std::size_t>(0, (n + block - 1) / block),
                      [&](const tbb::blocked_range<std::size_t>& r) {
                          for (std::size_t k = r.begin(); k != r.end(); ++k) {
                              f(k * block, std::min(n, (k + 1) * block));
                          }
                      });
}

// The baseline kernels. Plain loops over restrict pointers, which GCC vectorizes at -O3.
void hand_forward(const float* __restrict a, const float* __restrict b, const float* __restrict c,
                  float* __restrict y, std::size_t lo, std::size_t hi) {
    for (std::size_t i = lo; i < hi; ++i) y[i] = std::max(a[i] * b[i] + c[i], 0.0f);
}

// All three gradients in one pass; the relu mask is recomputed from the inputs, as the fused
// node does, rather than read back from y.
void hand_backward(const float* __restrict a, const float* __restrict b, const float* __restrict c,
                   const float* __restrict g, float* __restrict da, float* __restrict db,
                   float* __restrict dc, std::size_t lo, std::size_t hi) {
    for (std::size_t i = lo; i < hi; ++i) {
        const float d = a[i] * b[i] + c[i] > 0.0f ? g[i] : 0.0f;
        da[i] = d * b[i];
        db[i] = d * a[i];
        dc[i] = d;
    }
}

void BM_hand_loop(benchmark::State& state) {
    const auto n = static_cast<std::size_t>(state.range(0));
    auto threads = threads_of(state);
    const xt::xarray<float> a = random_array(n, 1), b = random_array(n, 2), c = random_array(n, 3);
    std::vector<float> y(n), g(n, 1.0f), da(n), db(n), dc(n);
    for (auto _ : state) {
        for_blocks(n, [&](std::size_t lo, std::size_t hi) {
            hand_forward(a.data(), b.data(), c.data(), y.data(), lo, hi);
        });
        for_blocks(n, [&](std::size_t lo, std::size_t hi) {
            hand_backward(a.data(), b.data(), c.data(), g.data(), da.data(), db.data(), dc.data(), lo, hi);
        });
        for (const auto* out : {&y, &da, &db, &dc}) benchmark::DoNotOptimize(out->data());
        benchmark::ClobberMemory();
    }
    set_bytes(state, n);
}

void BM_sigmoid_fused(benchmark::State& state) {
    const auto n = static_cast<std::size_t>(state.range(0));
    auto threads = threads_of(state);
    Var<float> x(random_array(n, 1), true);
    const xt::xarray<float> seed = random_array(n, 2);
    for (auto _ : state) {
        Var<float> y = sigmoid(x);
        y.backward(seed);
        benchmark::DoNotOptimize(x.grad().data());
        x.zero_grad();
    }
    set_bytes(state, n, sigmoid_arrays);
}

// The baseline: y = 1 / (1 + e^-x) with xsimd's exp (what the node's expression evaluates), then
// dx = g * (1 - y) * y from the stored y, each a loop over the node's blocks.
void hand_sigmoid_forward(const float* __restrict x, float* __restrict y, std::size_t lo, std::size_t hi) {
    using batch = xsimd::batch<float>;
    std::size_t i = lo;
    for (; i + batch::size <= hi; i += batch::size) {
        const batch e = xsimd::exp(-batch::load_unaligned(x + i));
        (batch(1.0f) / (batch(1.0f) + e)).store_unaligned(y + i);
    }
    for (; i < hi; ++i) y[i] = 1.0f / (1.0f + std::exp(-x[i]));
}

void hand_sigmoid_backward(const float* __restrict y, const float* __restrict g, float* __restrict dx, std::size_t lo,
                           std::size_t hi) {
    for (std::size_t i = lo; i < hi; ++i) dx[i] = g[i] * (1.0f - y[i]) * y[i];
}

void BM_sigmoid_hand_loop(benchmark::State& state) {
    const auto n = static_cast<std::size_t>(state.range(0));
    auto threads = threads_of(state);
    const xt::xarray<float> x = random_array(n, 1), g = random_array(n, 2);
    std::vector<float> y(n), dx(n);
    for (auto _ : state) {
        for_blocks(n, [&](std::size_t lo, std::size_t hi) { hand_sigmoid_forward(x.data(), y.data(), lo, hi); });
        for_blocks(n, [&](std::size_t lo, std::size_t hi) { hand_sigmoid_backward(y.data(), g.data(), dx.data(), lo, hi); });
        for (const auto* out : {&y, &dx}) benchmark::DoNotOptimize(out->data());
        benchmark::ClobberMemory();
    }
    set_bytes(state, n, sigmoid_arrays);
}

// The memory bandwidth reference: bytes counted are the copy's own (read n floats, write n).
void BM_memcpy(benchmark::State& state) {
    const auto n = static_cast<std::size_t>(state.range(0));
    std::vector<float> src(n, 1.0f), dst(n);
    for (auto _ : state) {
        std::memcpy(dst.data(), src.data(), n * sizeof(float));
        benchmark::DoNotOptimize(dst.data());
        benchmark::ClobberMemory();
    }
    state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) * 2 *
                            static_cast<std::int64_t>(n * sizeof(float)));
}

void sizes_and_threads(benchmark::internal::Benchmark* b) {
    b->ArgNames({"n", "threads"});
    for (std::int64_t n : {1 << 20, 1 << 24}) {
        for (std::int64_t t : {1, 2}) b->Args({n, t});
    }
    b->Unit(benchmark::kMillisecond)->UseRealTime();
}

}  // namespace

BENCHMARK(BM_fused)->Apply(sizes_and_threads);
BENCHMARK(BM_separate_nodes)->Apply(sizes_and_threads);
BENCHMARK(BM_hand_loop)->Apply(sizes_and_threads);
BENCHMARK(BM_sigmoid_fused)->Apply(sizes_and_threads);
BENCHMARK(BM_sigmoid_hand_loop)->Apply(sizes_and_threads);
BENCHMARK(BM_memcpy)->ArgNames({"n"})->Arg(1 << 20)->Arg(1 << 24)->Unit(benchmark::kMillisecond)->UseRealTime();
