// oneDNN's layer normalization (Debian's libdnnl 2.6), the reference for xgrad's LayerNorm over
// (C, H, W): the (N, C, S) tensor as N rows of C·S elements, normalized along the row, with an
// elementwise scale and shift of C·S values each, f32; forward-train and forward-train + backward
// at the shapes of bench/bn_shapes.hpp, 1 and 2 OpenMP threads. Arguments: N, C, S, threads.
// bytes_per_second counts the data tensors (x and y; with the backward also dy, dx and x again),
// not the scale and shift that norm_family_bench's LayerNorm counts besides.
#include <omp.h>

#include <cstdint>

#include <benchmark/benchmark.h>
#include <oneapi/dnnl/dnnl.hpp>

#include "bench/bn_shapes.hpp"
#include "bench/onednn_normalization.hpp"

namespace {

using dnnl::memory;

xgrad_bench::NormalizationProblem problem(const benchmark::State& state) {
    omp_set_num_threads(static_cast<int>(state.range(3)));
    const std::int64_t n = state.range(0), m = state.range(1) * state.range(2);
    xgrad_bench::NormalizationProblem p;
    p.data = memory::desc({n, m}, memory::data_type::f32, memory::format_tag::ab);
    p.params = memory::desc({m}, memory::data_type::f32, memory::format_tag::a);
    p.elements = n * m;
    return p;
}

void BM_onednn_layer_norm_forward_train(benchmark::State& state) {
    auto p = problem(state);
    xgrad_bench::time_forward<dnnl::layer_normalization_forward>(state, p);
}

void BM_onednn_layer_norm_forward_backward_train(benchmark::State& state) {
    auto p = problem(state);
    xgrad_bench::time_forward_backward<dnnl::layer_normalization_forward, dnnl::layer_normalization_backward>(state,
                                                                                                                p);
}

void shapes(benchmark::internal::Benchmark* b) {
    xgrad_bench::bn_shapes(b);
    b->ArgNames({"N", "C", "S", "threads"});
}

}  // namespace

BENCHMARK(BM_onednn_layer_norm_forward_train)->Apply(shapes);
BENCHMARK(BM_onednn_layer_norm_forward_backward_train)->Apply(shapes);

BENCHMARK_MAIN();
