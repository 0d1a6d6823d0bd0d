// oneDNN's layer normalization (Debian's libdnnl 2.6), the reference for xgrad's LayerNorm over
// (C, H, W): the (N, C, S) tensor as N rows of C·S elements, normalized along the row, with an
// elementwise scale and shift of C·S values each, f32; forward-train and forward-train + backward
// at the shapes of bench/bn_shapes.hpp, 1 and 2 OpenMP threads. Arguments: N, C, S, threads.
// bytes_per_second counts the same minimal traffic as norm_family_bench.
#include <omp.h>

#include <cstdint>

#include <benchmark/benchmark.h>
#include <oneapi/dnnl/dnnl.hpp>

#include "bench/bn_shapes.hpp"
#include "bench/onednn_normalization.hpp"

namespace {

using dnnl::memory;

constexpr float epsilon = 1e-5f;
const auto flags = dnnl::normalization_flags::use_scale | dnnl::normalization_flags::use_shift;

struct Problem {
    dnnl::engine engine{dnnl::engine::kind::cpu, 0};
    dnnl::stream stream{engine};
    memory::desc data;
    memory::desc row;
    std::int64_t elements;

    explicit Problem(benchmark::State& state) {
        omp_set_num_threads(static_cast<int>(state.range(3)));
        const std::int64_t n = state.range(0), m = state.range(1) * state.range(2);
        data = memory::desc({n, m}, memory::data_type::f32, memory::format_tag::ab);
        row = memory::desc({m}, memory::data_type::f32, memory::format_tag::a);
        elements = n * m;
    }
};

void BM_onednn_layer_norm_forward_train(benchmark::State& state) {
    Problem p(state);
    const dnnl::layer_normalization_forward::primitive_desc pd(
        {dnnl::prop_kind::forward_training, p.data, epsilon, flags}, p.engine);
    const dnnl::layer_normalization_forward forward(pd);
    const auto args = xgrad_bench::normalization_tensors(pd, p.data, p.row, p.engine).forward_args();
    for (auto _ : state) {
        forward.execute(p.stream, args);
        p.stream.wait();
    }
    state.SetBytesProcessed(state.iterations() * 2 * p.elements * static_cast<std::int64_t>(sizeof(float)));
}

void BM_onednn_layer_norm_forward_backward_train(benchmark::State& state) {
    Problem p(state);
    const dnnl::layer_normalization_forward::primitive_desc forward_pd(
        {dnnl::prop_kind::forward_training, p.data, epsilon, flags}, p.engine);
    const dnnl::layer_normalization_backward::primitive_desc backward_pd(
        {dnnl::prop_kind::backward, p.data, p.data, epsilon, flags}, p.engine, forward_pd);
    const dnnl::layer_normalization_forward forward(forward_pd);
    const dnnl::layer_normalization_backward backward(backward_pd);
    const auto tensors = xgrad_bench::normalization_tensors(forward_pd, p.data, p.row, p.engine);
    const auto forward_args = tensors.forward_args();
    const auto backward_args = tensors.backward_args();
    for (auto _ : state) {
        forward.execute(p.stream, forward_args);
        backward.execute(p.stream, backward_args);
        p.stream.wait();
    }
    state.SetBytesProcessed(state.iterations() * 5 * p.elements * static_cast<std::int64_t>(sizeof(float)));
}

void shapes(benchmark::internal::Benchmark* b) {
    xgrad_bench::bn_shapes(b);
    b->ArgNames({"N", "C", "S", "threads"});
}

}  // namespace

BENCHMARK(BM_onednn_layer_norm_forward_train)->Apply(shapes);
BENCHMARK(BM_onednn_layer_norm_forward_backward_train)->Apply(shapes);

BENCHMARK_MAIN();
